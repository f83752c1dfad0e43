"""Specialisation vs model size (after Malaquias Junior et al.): specialist and generalist at matched compute.

For each model size, the specialist is the continued-pretraining run at the specialist ratio and the generalist the
ratio-0 run of the same budget (same N, same tokens: matched compute). Each is scored at its best checkpoint,
selected on the domain *validation* suite and reported on the *test* suites: domain perplexity, and forgetting
(general test loss minus the base model's). Power laws ppl = k·N^p are fitted across sizes for both roles, and
SGER (see :func:`cpt_scaling.decisions.sger`: the compute a generalist needs to reach the specialist's best domain
perplexity, over the specialist's compute, both counting their continued-pretraining tokens) is reported per
size. The optimal model size per compute is read off the checkpoints: for each compute budget 6·N·D, the size
with the lowest domain test loss.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling import decisions
from cpt_scaling.atomic import write_json
from cpt_scaling.config import GENERAL
from cpt_scaling.studies.common import fit_points, write_csv
from cpt_scaling.tables import read_eval_tables

log = logging.getLogger(__name__)

MIN_SIZES = 3  # a two-parameter power law across sizes needs at least three sizes


def _role_rows(df: pd.DataFrame, ratio: float, budget: int) -> pd.DataFrame:
    return df[(df["kind"] == "cpt") & (df["ratio"] == ratio) & (df["budget"] == budget) & (df["D"] > 0)]


def best_checkpoints(df: pd.DataFrame, domain: str, specialist_ratio: float) -> pd.DataFrame:
    """One row per (size, role): best checkpoint by domain validation loss and its test metrics."""
    budget = int(df.loc[(df["kind"] == "cpt") & (df["ratio"] == specialist_ratio), "budget"].max())
    pre = df[(df["kind"] == "pretrain") & (df["split"] == "test")]
    base_general = {s: r.loc[(r["suite"] == GENERAL) & (r["D"] == r["D"].max()), "loss"].mean()
                    for s, r in pre.groupby("size")}
    base_domain = {s: r.loc[(r["suite"] == domain) & (r["D"] == r["D"].max()), "loss"].mean()
                   for s, r in pre.groupby("size")}
    rows = []
    for role, ratio in (("specialist", specialist_ratio), ("general", 0.0)):
        runs = _role_rows(df, ratio, budget)
        for size, r in runs.groupby("size"):
            val = r[(r["suite"] == domain) & (r["split"] == "val")].set_index("D")["loss"]
            test_dom = r[(r["suite"] == domain) & (r["split"] == "test")].set_index("D")["loss"]
            test_gen = r[(r["suite"] == GENERAL) & (r["split"] == "test")].set_index("D")["loss"]
            best = int(val.idxmin())
            rows.append({
                "size": size, "N": int(r["N"].iloc[0]), "role": role, "ratio": ratio, "budget": budget,
                "best_D": best, "val_loss": float(val[best]), "domain_loss": float(test_dom[best]),
                "perplexity": math.exp(float(test_dom[best])), "general_loss": float(test_gen[best]),
                "base_domain_loss": float(base_domain.get(size, np.nan)),
                "forgetting": float(test_gen[best] - base_general.get(size, np.nan)),
                "compute": 6.0 * float(r["N"].iloc[0]) * best,
            })
    return pd.DataFrame(rows).sort_values(["role", "N"]).reset_index(drop=True)


def compute_optimal_sizes(df: pd.DataFrame, domain: str, specialist_ratio: float) -> pd.DataFrame:
    """For each compute budget 6·N·D reached by some checkpoint, the size with the lowest domain test loss
    (per role), interpolating each size's loss linearly in log-compute between its checkpoints."""
    budget = int(df.loc[(df["kind"] == "cpt") & (df["ratio"] == specialist_ratio), "budget"].max())
    rows = []
    for role, ratio in (("specialist", specialist_ratio), ("general", 0.0)):
        r = _role_rows(df, ratio, budget)
        r = r[(r["suite"] == domain) & (r["split"] == "test")].assign(compute=lambda x: 6.0 * x["N"] * x["D"])
        curves = {size: g.sort_values("compute") for size, g in r.groupby("size")}
        budgets = np.geomspace(r["compute"].min(), r["compute"].max(), 12)
        for c in budgets:
            best, best_loss = None, math.inf
            for size, g in curves.items():
                lc = np.log(g["compute"].to_numpy())
                if not lc[0] - 1e-9 <= math.log(c) <= lc[-1] + 1e-9:
                    continue
                loss = float(np.interp(math.log(c), lc, g["loss"].to_numpy()))
                if loss < best_loss:
                    best, best_loss = size, loss
            if best is not None:
                rows.append({"role": role, "compute": float(c), "best_size": best,
                             "N": int(curves[best]["N"].iloc[0]), "loss": best_loss})
    return pd.DataFrame(rows)


def fit_specialization_study(eval_tables: list[Path], domain: str, specialist_ratio: float, fit: dict[str, Any],
                             law_out: Path, table_out: Path, compute_out: Path) -> dict[str, Any]:
    """Best checkpoints, power laws, SGER and compute-optimal sizes for one domain."""
    df = read_eval_tables(eval_tables)
    best = best_checkpoints(df, domain, specialist_ratio)
    result: dict[str, Any] = {"study": "specialization", "domain": domain, "specialist_ratio": specialist_ratio}
    n_sizes = int(best["N"].nunique())
    if n_sizes < MIN_SIZES:
        result["note"] = f"power laws and SGER need at least {MIN_SIZES} model sizes; the sweep has {n_sizes}"
        log.warning("specialization %s: %s", domain, result["note"])
    else:
        for role in ("specialist", "general"):
            pts = best[best["role"] == role][["N", "perplexity"]].rename(columns={"perplexity": "loss"})
            result[f"{role}_powerlaw"] = fit_points("powerlaw", pts, fit, holdout=False)
    sger_rows = []
    for _, row in best[best["role"] == "specialist"].iterrows():
        if n_sizes < MIN_SIZES:
            break
        s = decisions.sger(result["general_powerlaw"], result["specialist_powerlaw"], N_specialist=float(row["N"]),
                           tokens_general=float(row["budget"]), tokens_specialist=float(row["budget"]))
        sger_rows.append({"size": row["size"], **s})
    result["sger"] = sger_rows
    sger_cols = ["size", "sger", "N_general_equivalent", "extrapolated"]
    sger = pd.DataFrame(sger_rows, columns=[*sger_cols, "N_specialist"])[sger_cols]
    table = best.merge(sger.assign(role="specialist"), on=["size", "role"], how="left")
    optimal = compute_optimal_sizes(df, domain, specialist_ratio)
    result["specialist_beats_general"] = {
        str(size): bool(g.set_index("role").loc["specialist", "perplexity"] < g.set_index("role").loc["general",
                                                                                                  "perplexity"])
        for size, g in best.groupby("size") if set(g["role"]) == {"specialist", "general"}}
    write_csv(table, table_out)
    write_csv(optimal, compute_out)
    write_json(law_out, result)
    log.info("specialization %s: specialist beats general at %s", domain, result["specialist_beats_general"])
    return result
