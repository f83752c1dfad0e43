"""The optional target results/tables/next_runs_<domain>.csv: a real Snakemake run on the finished micro sweep gives
what `cpt-scaling next` gives on the same law, points and candidates; without bootstrap samples it fails naming
fit.bootstrap; the default target never plans it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_utils import planned_jobs, run_snakemake

from cpt_scaling.cli.main import main
from cpt_scaling.fit.candidates import read_candidates
from cpt_scaling.plan.next_runs import cost_assumptions

pytestmark = pytest.mark.slow

TARGET = "results/tables/next_runs_legal.csv"
# The grid: the micro sweep's sizes (studies.next_runs.sizes null), two ratios, one budget twice cpt.tokens.
RATIOS, TOKENS = [0.25, 0.75], [8192]
SHAPES = {"s": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64},
          "xs": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32}}


def _candidates() -> pd.DataFrame:
    """The grid as a candidates CSV for `cpt-scaling next`, written by hand, in the grid's order (size, ratio, D)."""
    return pd.DataFrame([{"name": name, "size": name, **shape, "D": d, "r": r}
                         for name, shape in SHAPES.items() for r in RATIOS for d in TOKENS])


def _write_config(workdir: Path, name: str, budget: float, bootstrap: int) -> str:
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    cfg["fit"] = {**cfg["fit"], "bootstrap": bootstrap, "bootstrap_starts": 1}
    cfg["studies"]["next_runs"] = {"budget_gpu_hours": budget, "ratios": RATIOS, "tokens": TOKENS,
                                   "simulations": 64, "seed": 0}
    (workdir / name).write_text(yaml.safe_dump(cfg))
    return name


def test_next_runs_target_does_what_next_does(micro_copy: Path, tmp_path: Path) -> None:
    cands = tmp_path / "candidates.csv"
    _candidates().to_csv(cands, index=False)
    micro = yaml.safe_load((micro_copy / "micro.yaml").read_text())
    cost = cost_assumptions()
    prices = sorted(c.gpu_hours for c in read_candidates(
        _candidates(), "grid", cost, seq_len=micro["shards"]["seq_len"],
        vocab_size=micro["tokenizer"]["vocab_size"], default_checkpoints=micro["cpt"]["checkpoints"]))
    budget = 2.5 * prices[0]  # room for two or three of the cheapest runs, not for everything

    # the micro sweep's own fit has no bootstrap samples: one clear error naming the key to set
    no_boot = _write_config(micro_copy, "no_boot.yaml", budget, bootstrap=0)
    result = run_snakemake(micro_copy, no_boot, TARGET)
    assert result.returncode != 0
    assert "ERROR:" in result.stderr and "set fit.bootstrap" in result.stderr, result.stderr[-3000:]
    assert not (micro_copy / TARGET).exists()

    edited = _write_config(micro_copy, "next.yaml", budget, bootstrap=50)
    assert all(rule != "next_runs" for rule, _ in planned_jobs(micro_copy, edited))  # not in the default target
    result = run_snakemake(micro_copy, edited, TARGET)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    chosen = pd.read_csv(micro_copy / TARGET)
    # The calibrated proposer may judge no run of the micro sweep's grid informative (its expected widths never
    # exceed today's); whatever it chooses, the target and the CLI must choose the same.
    grid = {f"{n}-r{r:g}-D{d:g}" for n in SHAPES for r in RATIOS for d in TOKENS}
    assert set(chosen["candidate"]) <= grid
    assert set(chosen["r"]) <= set(RATIOS) and set(chosen["D"]) <= set(TOKENS) and set(chosen["size"]) <= set(SHAPES)
    assert chosen["gpu_hours"].sum() <= budget * (1 + 1e-12)

    out = tmp_path / "cli.csv"
    assert main(["next", "--law", str(micro_copy / "results/laws/dcpt_legal.json"),
                 "--points", str(micro_copy / "results/tables/dcpt_points_legal.csv"), "--candidates", str(cands),
                 "--decision", "usage2", "--budget", repr(budget), "--simulations", "64", "--seed", "0",
                 "--configfile", str(micro_copy / edited), "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), chosen)
