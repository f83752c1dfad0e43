"""Runs you can watch: TensorBoard event files of the micro sweep read back with TensorBoard's own reader, the
stitched training curves, and the bill a dry run ends with (the same totals as ``cpt-scaling cost``)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_workdir
from workflow_utils import REPO, run_snakemake

from cpt_scaling.dryrun.bill import planned_jobs
from cpt_scaling.dryrun.cost_report import cost_report
from cpt_scaling.train.train_log import read_log


def _steps(run: Path) -> list[dict]:
    return [r for r in read_log(run / "train_log.jsonl") if r["event"] == "step"]


@pytest.mark.slow
def test_tensorboard_scalars_of_every_micro_run_equal_its_jsonl_log(micro_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted((micro_run / "artifacts" / "train").iterdir())
    assert len(runs) == 18
    for run in runs:
        board = EventAccumulator(str(micro_run / "logs" / "tensorboard" / run.name))
        board.Reload()
        assert {"train/loss", "train/lr", "speed/tokens_per_s", "speed/eta_s"} <= set(board.Tags()["scalars"])
        steps = _steps(run)
        loss = board.Scalars("train/loss")
        assert [e.step for e in loss] == [r["tokens"] for r in steps], run.name  # tokens on the axis, no repeats
        assert [e.value for e in loss] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
        assert [e.value for e in board.Scalars("train/lr")] == pytest.approx([r["lr"] for r in steps], rel=1e-6)
        # ZeRO-0 in fp32 (DeepSpeed gives no norm there): the trainer's own, at every logged step.
        norms = [r["grad_norm"] for r in steps]
        assert all(n is not None and math.isfinite(n) and n > 0 for n in norms), (run.name, norms)
        assert [e.value for e in board.Scalars("train/grad_norm")] == pytest.approx(norms, rel=1e-6)


def test_the_logged_gradient_norm_of_zero_0_is_that_of_the_steps_gradients(tmp_path: Path) -> None:
    """One logged step of a tiny model under DeepSpeed ZeRO-0 on CPU (two micro-batches): its ``grad_norm`` is
    the 2-norm of the gradient of the step's mean loss, computed here by hand from the initial weights and
    batch, before clipping (the clip, 0.05, lies below it)."""
    import torch
    from tiny_shards import SEQ_LEN, VOCAB, make_shards, tiny_spec

    from cpt_scaling.data.sequences import read_train_sequences
    from cpt_scaling.train.mixture import MixtureSampler
    from cpt_scaling.train.model import load_model
    from cpt_scaling.train.trainer import train

    general = make_shards(tmp_path / "general", domain=False)
    spec = tiny_spec(general, None, tokens=8 * SEQ_LEN, log_every=1, checkpoint_tokens=[0])
    spec["optimizer"]["grad_clip"] = 0.05
    train(spec, tmp_path / "run")
    (logged,) = _steps(tmp_path / "run")

    model = load_model(tmp_path / "run" / "checkpoints" / "tokens-000000000000")  # the weights before the step
    rows = MixtureSampler(read_train_sequences(general, SEQ_LEN, VOCAB), None, 0.0, 8, spec["seed"]).batch(0)
    ids = torch.from_numpy(rows.astype("int64"))
    for micro in (ids[:4], ids[4:]):  # micro_batch_size 4: the step's loss is the mean of the two
        (model(input_ids=micro, labels=micro).loss / 2).backward()
    by_hand = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
    assert by_hand > 0.05 * 10
    assert logged["grad_norm"] == pytest.approx(by_hand, rel=1e-5)


def test_a_resumed_or_rerun_jobs_tensorboard_log_shows_each_step_once(tmp_path: Path) -> None:
    """A resume at 1,024 tokens logs 1,536 and 2,048 again: TensorBoard shows the second attempt's values there,
    the first's before; a rerun from scratch shows only its own."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cpt_scaling.train.tensorboard_log import TensorBoardLog

    def attempt(start: int, tokens: list[int], loss: float) -> None:
        board = TensorBoardLog(tmp_path, start)
        for t in tokens:
            board.add({"tokens": t, "loss": loss, "lr": 0.1, "grad_norm": None})
        board.close()

    def scalars() -> list[tuple[int, float]]:
        acc = EventAccumulator(str(tmp_path))
        acc.Reload()
        assert "train/grad_norm" not in acc.Tags()["scalars"]  # None: left out
        return [(e.step, e.value) for e in acc.Scalars("train/loss")]

    attempt(0, [512, 1024, 1536, 2048], 5.0)
    attempt(1024, [1536, 2048], 4.0)
    assert scalars() == [(512, 5.0), (1024, 5.0), (1536, 4.0), (2048, 4.0)]
    attempt(0, [512, 1024], 3.0)
    assert scalars() == [(512, 3.0), (1024, 3.0)]


@pytest.mark.slow
def test_training_logs_hold_training_lines_not_deepspeeds_compiler_probes(micro_run: Path) -> None:
    logs = sorted((micro_run / "logs" / "train").glob("*.log"))
    assert len(logs) == 18
    for log in logs:
        text = log.read_text()
        assert "cpt_scaling.train.trainer: step " in text, log.name
        assert "gcc " not in text and "compilers." not in text, log.name


@pytest.mark.slow
def test_train_curves_table_holds_every_logged_step_and_a_figure_per_group(micro_run: Path) -> None:
    curves = pd.read_csv(micro_run / "results" / "tables" / "train_curves.csv")
    runs = sorted((micro_run / "artifacts" / "train").iterdir())
    assert set(curves["run"]) == {r.name.rsplit("-", 1)[0] for r in runs}  # no WSD here: one job per run
    assert set(curves["phase"]) == {"run"}
    for run in runs:
        rows = curves[curves["run"] == run.name.rsplit("-", 1)[0]]
        steps = _steps(run)
        assert rows["tokens"].tolist() == [r["tokens"] for r in steps]
        assert rows["loss"].to_numpy() == pytest.approx([r["loss"] for r in steps], rel=1e-5)
    for group in ("pretrain", "legal", "medical"):
        pdf = micro_run / "results" / "figures" / f"train_curves_{group}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF")


def test_planned_jobs_of_job_records_depend_on_the_jobs_whose_outputs_they_read() -> None:
    records = [
        {"jobid": 3, "rule_name": "evaluate", "input": ["a/ck.json", "raw.txt"], "output": ["e/x.parquet"],
         "wildcards": {"key": "k3"}, "resources": {"mem_mb": 10, "_cores": 1}},
        {"jobid": 1, "rule_name": "train", "input": ["raw.txt"], "output": ["a/ck.json", "a/spec.json"],
         "wildcards": {"name": "a", "key": "k1"}, "resources": {"runtime": 5}},
        {"jobid": 7, "rule_name": "all", "input": ["e/x.parquet", "a/spec.json"], "output": [], "wildcards": {},
         "resources": {}},
    ]
    assert planned_jobs(records) == [
        (1, "train", "a/ck.json", "k1", (), {"runtime": 5}),
        (3, "evaluate", "e/x.parquet", "k3", (1,), {"mem_mb": 10}),
        (7, "all", "all", None, (1, 3), {}),
    ]


@pytest.mark.slow
def test_a_slurm_dry_run_ends_with_the_bill_of_cpt_scaling_cost(tmp_path: Path) -> None:
    """Must-show 2: `snakemake --profile profiles/slurm -n <figure>` on the micro config (priced on one GPU of a
    slow peak, so that the GPU-hours are large) ends with the totals `cpt-scaling cost` gives for that target."""
    workdir = make_workdir(tmp_path / "w")
    micro = yaml.safe_load((workdir / "micro.yaml").read_text())
    micro["cost"] = {"gpus_per_job": 1, "peak_flops_per_gpu": 1000.0}
    (workdir / "gpu.yaml").write_text(yaml.safe_dump(micro))
    target = "results/figures/dcpt_legal.pdf"
    result = run_snakemake(workdir, "gpu.yaml", target, "--dry-run", profile="slurm")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bill = result.stdout.split("Bill of this dry run", 1)[1]
    report = cost_report([target], snakefile=REPO / "Snakefile", workdir=workdir, configfiles=["gpu.yaml"],
                         profile=REPO / "profiles" / "slurm")
    assert bill.strip().endswith(report.format_totals()), bill  # the bill is the last thing printed
    totals = report.totals
    gpu_hours = float(re.search(r"GPU-hours: +([\d,.]+)", bill).group(1).replace(",", ""))
    assert gpu_hours == pytest.approx(totals["gpu_hours"], abs=0.005) and gpu_hours > 100
    assert totals["train_jobs"] == 8 and totals["parallelism"] == 100
    assert f"SLURM submissions:   {totals['submissions']}" in bill and "peak GB per GPU" in bill
