"""Training curves stitched from the JSONL logs of the jobs a run is spread over: a WSD branch's curve is its
trunk's segments up to the branch point, then its own decay, one curve in training tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.train.train_log import LOG_NAME, read_log

#: Columns of ``train_curves.csv``: the run and its coordinates, the job (``segment``) a row was logged by and its
#: ``phase`` (``trunk``: a WSD trunk segment the run continues; ``branch``: the run's own job after them; ``run``: a
#: run of one job), then the step record.
COLUMNS = ["run", "family", "kind", "size", "domain", "ratio", "segment", "phase", "step", "tokens", "loss", "lr",
           "grad_norm"]


def segment_records(run_dir: Path) -> list[dict[str, Any]]:
    """The step records of one training job's log, one per step: a resume (a ``start`` record with
    ``resumed_from`` tokens) drops the records past its checkpoint (steps the interrupted process logged and the
    resumed one redid), and a step logged again keeps its last record. (A resumed process also logs its own first
    step, which an uninterrupted job may not have logged.)"""
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        raise InputError(str(path), "missing: the training job wrote no log")
    steps: dict[int, dict[str, Any]] = {}
    for record in read_log(path):
        if record.get("event") == "start" and record.get("resumed_from") is not None:
            steps = {s: r for s, r in steps.items() if r["tokens"] <= record["resumed_from"]}
        elif record.get("event") == "step":
            steps[record["step"]] = record
    return [steps[s] for s in sorted(steps)]


def run_curve(run: dict[str, Any]) -> pd.DataFrame:
    """One run's curve (a :meth:`~cpt_scaling.plan.curves.TrainCurves.train_curves_job` entry): each segment's
    steps before the next segment's first, in tokens."""
    rows: list[dict[str, Any]] = []
    segments = [Path(d) for d in run["segments"]]
    for i, seg in enumerate(segments):
        records = segment_records(seg)
        if i + 1 < len(segments):  # the next job starts from this one's final state: it logs what follows
            start = min((r["tokens"] for r in segment_records(segments[i + 1])), default=float("inf"))
            records = [r for r in records if r["tokens"] < start]
        phase = "trunk" if i + 1 < len(segments) else "branch" if len(segments) > 1 else "run"
        rows += [{"segment": seg.name.rsplit("-", 1)[0], "phase": phase,
                  **{k: r.get(k) for k in ("step", "tokens", "loss", "lr", "grad_norm")}} for r in records]
    meta = {k: run[k] for k in ("run", "family", "kind", "size", "domain", "ratio")}
    return pd.DataFrame([{**meta, **row} for row in rows], columns=COLUMNS)


def train_curves(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Every run's stitched curve, one row per logged step, ordered by run and tokens."""
    frames = [run_curve(run) for run in runs]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return table.sort_values(["run", "tokens"], kind="stable").reset_index(drop=True)
