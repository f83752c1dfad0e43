"""Evaluation tables: one run on one suite with its sweep coordinates, and the tidy table of a whole sweep."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cpt_scaling.config.names import SPLIT_SEP
from cpt_scaling.core.atomic import atomic_path
from cpt_scaling.evaluate.heldout import evaluate_checkpoints
from cpt_scaling.evaluate.jobs import CheckpointsJob, EvalJob, ExamJob
from cpt_scaling.train.runs import run_checkpoints

log = logging.getLogger(__name__)

# Sweep coordinates attached to every loss row. D is continued-pretraining tokens for CPT runs and pretraining
# tokens for pretraining runs; pretrain_tokens is the base model's pretraining budget (0 for a local base model).
# A run that continues another run's state (a split curve off the pretraining trunk) counts D from that state:
# its job's meta ``start_tokens`` is subtracted from the checkpoint's token count.
META_COLUMNS = ["run", "kind", "size", "N", "domain", "ratio", "budget", "pretrain_tokens"]


def _with_meta(table: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """A checkpoint table with the sweep coordinates of ``meta``; ``checkpoint_tokens`` becomes D (counted from
    the run's initial state when it continues another run's: ``start_tokens``)."""
    for column in META_COLUMNS:
        table[column] = meta.get(column)
    table["ratio"] = table["ratio"].astype("float64")
    table = table.rename(columns={"checkpoint_tokens": "D"})
    table["D"] -= int(meta.get("start_tokens", 0))
    return table


def _checkpoints(job: CheckpointsJob) -> list[tuple[int, Path]]:
    """A run's checkpoints, or a local base model (before any training of ours: 0 tokens)."""
    if job.run_dir is not None:
        return run_checkpoints(job.run_dir)
    assert job.checkpoint_dir is not None  # EvalJob/ExamJob.from_json: exactly one of the two
    return [(0, Path(job.checkpoint_dir))]


def evaluate_with_meta(job: EvalJob, out: Path) -> pd.DataFrame:
    """Evaluate every checkpoint of ``job.run_dir`` (or the base model ``job.checkpoint_dir``) on its suites
    and add the sweep coordinates of ``job.meta``."""
    suites = {name: Path(path) for name, path in job.suites.items()}
    checkpoints = _checkpoints(job)
    table = evaluate_checkpoints(checkpoints, suites, batch_size=job.batch_size).to_pandas()
    table["checkpoint"] = table["checkpoint_tokens"].map({tokens: str(path) for tokens, path in checkpoints})
    meta = job.meta
    table = _with_meta(table, meta)
    parts = table["suite"].str.split(SPLIT_SEP, n=1, expand=True)
    table["suite"], table["split"] = parts[0], parts[1]
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
    final = table[table["D"] == table["D"].max()]
    for suite, split, loss in zip(final["suite"], final["split"], final["loss"], strict=True):
        log.info("%s on %s (%s): final loss %.4f", meta["run"], suite, split, loss)
    return table


def read_eval_tables(paths: list[Path]) -> pd.DataFrame:
    """Concatenate per-run evaluation tables into one frame."""
    frames = [pq.read_table(p).to_pandas() for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        # A point is annealed (its LR decayed to the end) at a WSD branch end and at a cosine run's last
        # checkpoint, not at the cosine run's earlier checkpoints.
        df["annealed"] = df["budget"].isna() | (df["D"] == df["budget"])
        # WSD branches are the points of their trunk's curve (they share the run name): the curve reads like
        # one run's checkpoints, its budget the longest branch.
        df["budget"] = df["budget"].fillna(df.groupby("run")["D"].transform("max"))
    return df


#: Columns of ``checkpoints.csv``: where each evaluated checkpoint of the sweep lies, with its coordinates.
CHECKPOINT_COLUMNS = ["run", "kind", "size", "N", "domain", "ratio", "budget", "D", "annealed", "checkpoint"]


def write_checkpoint_index(df: pd.DataFrame, out: Path) -> pd.DataFrame:
    """One row per evaluated checkpoint (its run, coordinates, tokens ``D``, ``annealed`` and directory), from the
    sweep's evaluation rows; tables written before checkpoints were recorded give an empty ``checkpoint``."""
    if not len(df):
        index = pd.DataFrame(columns=CHECKPOINT_COLUMNS)
    else:
        rows = df.assign(checkpoint=df["checkpoint"] if "checkpoint" in df.columns else pd.NA)
        index = (rows[rows["metric"] == "loss"][CHECKPOINT_COLUMNS].drop_duplicates(["run", "D", "checkpoint"])
                 .sort_values(["kind", "N", "domain", "ratio", "D"], na_position="first").reset_index(drop=True))
    with atomic_path(out) as tmp:
        index.to_csv(tmp, index=False, float_format="%.6g")
    return index


def gather_eval_tables(paths: list[Path], parquet_out: Path, csv_out: Path,
                       checkpoints_out: Path | None = None) -> pd.DataFrame:
    """The sweep's tidy evaluation table (one row per run, checkpoint, suite and metric), as Parquet and CSV.

    Held-out loss rows have ``metric`` "loss" (``value`` = ``loss``; ``perplexity`` and ``n_tokens`` filled);
    exam rows (``suite`` = the exam's name, no ``split``) have ``metric`` acc, acc_norm or answer_ppl, their
    ``value`` and ``n_questions``. Readers of losses select ``metric == "loss"`` (or a non-null ``loss``).
    ``checkpoints_out``: also the index of checkpoint directories (:func:`write_checkpoint_index`)."""
    df = read_eval_tables(paths)
    if len(df):
        if "metric" not in df.columns:
            df["metric"] = pd.Series(pd.NA, index=df.index, dtype="object")
        if "value" not in df.columns:
            df["value"] = np.nan
        losses = df["metric"].isna()
        df.loc[losses, "metric"] = "loss"
        df.loc[losses, "value"] = df.loc[losses, "loss"]
    if checkpoints_out is not None:
        write_checkpoint_index(df, checkpoints_out)
    order = [c for c in ["run", "kind", "size", "N", "domain", "ratio", "budget", "pretrain_tokens", "D", "annealed",
                         "suite", "split", "metric", "value", "loss", "perplexity", "n_tokens", "n_questions"]
             if c in df.columns]
    df = df[order].sort_values([c for c in ["kind", "N", "domain", "ratio", "budget", "D", "suite", "split",
                                            "metric"] if c in df.columns],
                               na_position="first").reset_index(drop=True)
    with atomic_path(parquet_out) as tmp:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    log.info("eval table: %d rows from %d runs", len(df), df["run"].nunique() if len(df) else 0)
    return df


def exams_with_meta(job: ExamJob, out: Path) -> pd.DataFrame:
    """Score every checkpoint of ``job.run_dir`` (or the base model ``job.checkpoint_dir``) on the exams of
    ``job.exams`` through lm-eval-harness (:func:`cpt_scaling.evaluate.exams.score_checkpoints`, offline) and add the
    sweep coordinates: rows of the tidy eval table with ``metric`` acc, acc_norm or answer_ppl and its ``value``."""
    from cpt_scaling.evaluate.exams import score_checkpoints

    os.environ["HF_HUB_OFFLINE"] = "1"  # local task data only: never reach the Hub (set before datasets loads)
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    table = score_checkpoints(_checkpoints(job), Path(job.tokenizer_dir), job.exams,
                              batch_size=job.batch_size).to_pandas()
    table = _with_meta(table, job.meta)
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
    final = table[(table["D"] == table["D"].max()) & (table["metric"] == "acc")]
    for suite, value in zip(final["suite"], final["value"], strict=True):
        log.info("%s on exam %s: final acc %.3f", job.meta["run"], suite, value)
    return table
