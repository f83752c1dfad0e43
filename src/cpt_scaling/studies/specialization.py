"""Specialisation vs model size (after Malaquias Junior et al.): specialist and generalist at matched compute.

For each model size, the specialist is the continued-pretraining run at the specialist ratio and the generalist the
run of the same budget from the same base (same N, same tokens: matched compute) on the unfiltered pool, as in the
seed (or, with ``studies.specialization.generalist: general``, the ratio-0 run on the general class). Each is
scored at its best checkpoint (among the annealed ones unless ``fit.intermediate_points``), selected on the domain
*validation* suite and reported on the *test* suites: domain perplexity, and forgetting (general test loss minus
the base model's). SGER per size is the seed's: from the domain *validation* curves along
training, the continued-pretraining compute the general model of the same size needs to first reach the
specialist's lowest validation perplexity, over the compute at which the specialist reached it
(:func:`cpt_scaling.fit.decisions.sger_from_curves`; interpolated between checkpoints, extrapolated and flagged
beyond the sweep up to ``studies.specialization.sger_limit`` times its compute, else "> limit"). Power laws
ppl = k·N^p are fitted across sizes for both roles; the general size whose fitted perplexity equals the
specialist's is reported separately (``N_general_equivalent``, ``compute_ratio_across_sizes``), with bootstrap
intervals. The optimal model size per compute is read off the checkpoints: for each compute budget 6·N·D, the
size with the lowest domain test loss (``N_lo``/``N_hi``: the sizes within 0.5 % of that loss).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.config.names import GENERAL
from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit import decisions
from cpt_scaling.studies.common import (
    BASE_KINDS,
    fit_points,
    intermediate_points,
    note_unannealed,
    records,
    summary_diagnostics,
    with_annealed,
    write_csv,
)

log = logging.getLogger(__name__)

GENERALIST_DEFINITION = {
    "pool": "continued pretraining on the unfiltered pool (every classified document, its domain share included) "
            "from the same base, budget and schedule as the specialist (the seed's generalist)",
    "general": "the ratio-0 continued-pretraining run on the general class (no domain text)",
}

MIN_SIZES = 3  # a two-parameter power law across sizes needs at least three sizes


def generalist_kind(df: pd.DataFrame) -> str:
    """Which generalist the tables hold: ``pool`` (runs of kind ``generalist``: continued pretraining on the
    unfiltered pool, the seed's) when there are any, else ``general`` (the ratio-0 CPT run)."""
    return "pool" if (df["kind"] == "generalist").any() else "general"


def _run_rows(df: pd.DataFrame, role: str, specialist_ratio: float, budget: int,
              curve: bool = False) -> pd.DataFrame:
    """Rows of one role's runs at matched compute, the specialist's ``budget`` (D = 0 included): its CPT runs,
    or the generalist's. A pool generalist trained longer (``generalist_tokens_factor``) is cut at ``budget``
    where it has no run of that budget (a WSD trunk's branches); with ``curve``, its longest curve, whole."""
    if role == "general" and generalist_kind(df) == "pool":
        gen = df[df["kind"] == "generalist"]
        longest = gen[gen["budget"] == gen["budget"].max()]
        if curve:
            return longest
        same = gen[gen["budget"] == budget]
        return same if len(same) else longest[longest["D"] <= budget]
    ratio = specialist_ratio if role == "specialist" else 0.0
    return df[(df["kind"] == "cpt") & (df["ratio"] == ratio) & (df["budget"] == budget)]


def specialist_budget(df: pd.DataFrame, specialist_ratio: float) -> int:
    """The specialist's (largest) CPT budget: the matched compute both roles are compared at."""
    return int(df.loc[(df["kind"] == "cpt") & (df["ratio"] == specialist_ratio), "budget"].max())


def _role_rows(df: pd.DataFrame, role: str, specialist_ratio: float, budget: int) -> pd.DataFrame:
    rows = _run_rows(df, role, specialist_ratio, budget)
    return rows[rows["D"] > 0]


def best_checkpoints(df: pd.DataFrame, domain: str, specialist_ratio: float,
                     annealed_only: bool = False) -> pd.DataFrame:
    """One row per (size, role): best checkpoint by domain validation loss and its test metrics, among the
    annealed checkpoints only with ``annealed_only`` (its ``annealed`` column says which it is)."""
    df = with_annealed(df)
    budget = specialist_budget(df, specialist_ratio)
    pre = df[df["kind"].isin(BASE_KINDS) & (df["split"] == "test")]
    base_general = {s: r.loc[(r["suite"] == GENERAL) & (r["D"] == r["D"].max()), "loss"].mean()
                    for s, r in pre.groupby("size")}
    base_domain = {s: r.loc[(r["suite"] == domain) & (r["D"] == r["D"].max()), "loss"].mean()
                   for s, r in pre.groupby("size")}
    rows = []
    for role, ratio in (("specialist", specialist_ratio), ("general", 0.0)):
        runs = _role_rows(df, role, specialist_ratio, budget)
        for size, r in runs.groupby("size"):
            val_rows = r[(r["suite"] == domain) & (r["split"] == "val")]
            if annealed_only:
                val_rows = val_rows[val_rows["annealed"].astype(bool)]
                if val_rows.empty:
                    continue
            val = val_rows.set_index("D")["loss"]
            test_dom = r[(r["suite"] == domain) & (r["split"] == "test")].set_index("D")["loss"]
            test_gen = r[(r["suite"] == GENERAL) & (r["split"] == "test")].set_index("D")["loss"]
            best = int(val.idxmin())
            rows.append({
                "size": size, "N": int(r["N"].iloc[0]), "role": role, "budget": budget,
                "ratio": ratio if role == "specialist" or generalist_kind(df) == "general" else np.nan,
                "best_D": best, "val_loss": float(val[best]), "domain_loss": float(test_dom[best]),
                "perplexity": math.exp(float(test_dom[best])), "general_loss": float(test_gen[best]),
                "base_domain_loss": float(base_domain.get(size, np.nan)),
                "forgetting": float(test_gen[best] - base_general.get(size, np.nan)),
                "compute": 6.0 * float(r["N"].iloc[0]) * best,
                "annealed": bool(r.loc[r["D"] == best, "annealed"].astype(bool).all()),
            })
    return pd.DataFrame(rows).sort_values(["role", "N"]).reset_index(drop=True)


def _val_curve(df: pd.DataFrame, domain: str, role: str, specialist_ratio: float, budget: int,
               size: str) -> pd.DataFrame:
    """Domain validation loss along one run's training: columns D, compute (6·N·D), loss (D = 0 included); the
    generalist's longest curve."""
    r = _run_rows(df, role, specialist_ratio, budget, curve=True)
    r = r[(r["size"] == size) & (r["suite"] == domain) & (r["split"] == "val")]
    r = r.groupby("D", as_index=False).agg(N=("N", "first"), loss=("loss", "mean")).sort_values("D")
    return r.assign(compute=6.0 * r["N"] * r["D"])


def sger_per_size(df: pd.DataFrame, domain: str, specialist_ratio: float, limit: float) -> pd.DataFrame:
    """The seed's SGER per size from the validation curves of the specialist and the general run."""
    budget = specialist_budget(df, specialist_ratio)
    rows = []
    for size in sorted(set(df.loc[df["kind"] == "cpt", "size"].dropna())):
        spec = _val_curve(df, domain, "specialist", specialist_ratio, budget, size)
        gen = _val_curve(df, domain, "general", specialist_ratio, budget, size)
        spec, start = spec[spec["D"] > 0], gen.loc[gen["D"] == 0, "loss"]
        gen = gen[gen["D"] > 0]
        if spec.empty or gen.empty:
            continue
        out = decisions.sger_from_curves((spec["compute"].to_numpy(), np.exp(spec["loss"].to_numpy())),
                                         (gen["compute"].to_numpy(), np.exp(gen["loss"].to_numpy())),
                                         general_start_loss=float(np.exp(start.iloc[0])) if len(start) else None,
                                         limit=limit)
        rows.append({"size": size, "role": "specialist", "sger": out["sger"], "sger_lo": out["sger_lo"],
                     "sger_hi": out["sger_hi"], "sger_status": out["status"], "C_specialist": out["C_specialist"],
                     "C_general": out["C_general"], "C_general_own_min": out["C_general_own_min"]})
        if out["status"] != "interpolated":
            log.warning("SGER %s %s: %s (the general model does not reach the specialist's perplexity in the sweep)",
                        domain, size, out["status"])
    return pd.DataFrame(rows)


def compute_optimal_sizes(df: pd.DataFrame, domain: str, specialist_ratio: float, tie: float = 0.005
                          ) -> pd.DataFrame:
    """For each compute budget 6·N·D reached by some checkpoint, the size with the lowest domain test loss
    (per role), interpolating each size's loss linearly in log-compute between its checkpoints; ``N_lo``/``N_hi``
    span the sizes whose loss there is within ``tie`` (relative) of the best."""
    budget = specialist_budget(df, specialist_ratio)
    rows = []
    for role in ("specialist", "general"):
        r = _role_rows(df, role, specialist_ratio, budget)
        r = r[(r["suite"] == domain) & (r["split"] == "test")].assign(compute=lambda x: 6.0 * x["N"] * x["D"])
        curves = {size: g.sort_values("compute") for size, g in r.groupby("size")}
        budgets = np.geomspace(r["compute"].min(), r["compute"].max(), 12)
        for c in budgets:
            losses = {}
            for size, g in curves.items():
                lc = np.log(g["compute"].to_numpy())
                if not lc[0] - 1e-9 <= math.log(c) <= lc[-1] + 1e-9:
                    continue
                losses[size] = float(np.interp(math.log(c), lc, g["loss"].to_numpy()))
            if losses:
                best = min(losses, key=losses.__getitem__)
                near = [int(curves[s]["N"].iloc[0]) for s, v in losses.items() if v <= losses[best] * (1 + tie)]
                rows.append({"role": role, "compute": float(c), "best_size": best,
                             "N": int(curves[best]["N"].iloc[0]), "N_lo": min(near), "N_hi": max(near),
                             "loss": losses[best]})
    return pd.DataFrame(rows)


def perplexity_noise(fit: dict[str, Any], pts: pd.DataFrame) -> dict[str, Any]:
    """``fit`` with ``run_noise`` and ``base_noise`` (relative sds of a loss) restated for a perplexity fitted in
    log space: log perplexity is the loss, so its offset's sd is the relative sd times the loss. The generalist's
    and specialist's power laws get the same per-size (base model) offsets in their paired resamples."""
    loss = float(np.log(pts["loss"]).mean())
    return {**fit, **{k: fit[k] * loss for k in ("run_noise", "base_noise") if fit.get(k)}}


def fit_specialization_study(eval_tables: list[Path], domain: str, specialist_ratio: float, fit: dict[str, Any],
                             law_out: Path, table_out: Path, compute_out: Path,
                             sger_limit: float = 100.0) -> dict[str, Any]:
    """Best checkpoints, SGER per size, power laws, equivalent general sizes and compute-optimal sizes."""
    df = read_eval_tables(eval_tables)
    best = best_checkpoints(df, domain, specialist_ratio, annealed_only=not intermediate_points(fit))
    if best.empty:
        raise InputError(f"specialization points of {domain}", "no annealed checkpoint of the specialist or general "
                                                                "runs; set fit.intermediate_points: true")
    best["compute_to_own_min"] = best["compute"]
    result: dict[str, Any] = {"study": "specialization", "domain": domain, "specialist_ratio": specialist_ratio,
                              "sger_definition": "C_general / C_specialist per size from the domain validation "
                                                 "curves (continued-pretraining compute 6·N·D)",
                              "sger_limit": sger_limit, "generalist": generalist_kind(df),
                              "generalist_definition": GENERALIST_DEFINITION[generalist_kind(df)]}
    sger = sger_per_size(df, domain, specialist_ratio, sger_limit)
    result["sger"] = records(sger)
    n_sizes = int(best["N"].nunique())
    equiv_rows = []
    if n_sizes < MIN_SIZES:
        result["note"] = (f"power laws and equivalent general sizes need at least {MIN_SIZES} model sizes; the sweep "
                          f"has {n_sizes}")
        log.warning("specialization %s: %s", domain, result["note"])
    else:
        for role in ("specialist", "general"):
            rows = best[best["role"] == role]
            pts = rows[["N", "perplexity"]].rename(columns={"perplexity": "loss"})
            result[f"{role}_powerlaw"] = fit_points("powerlaw", pts, perplexity_noise(fit, pts), holdout=False,
                                                    groups=role + "-" + rows["size"].astype(str))
        for _, row in best[best["role"] == "specialist"].iterrows():
            e = decisions.equivalent_general_size(result["general_powerlaw"], result["specialist_powerlaw"],
                                                  N_specialist=float(row["N"]), tokens_general=float(row["budget"]),
                                                  tokens_specialist=float(row["budget"]))
            equiv_rows.append({"size": row["size"], "role": "specialist",
                               **{k: e[k] for k in ("N_general_equivalent", "N_general_equivalent_lo",
                                                    "N_general_equivalent_hi", "compute_ratio_across_sizes",
                                                    "compute_ratio_across_sizes_lo",
                                                    "compute_ratio_across_sizes_hi", "extrapolated")}})
    result["equivalent_general_size"] = equiv_rows
    flagged = [f"SGER of {r['size']}: {r['sger_status']}" for r in result["sger"] if r["sger_status"] != "interpolated"]
    flagged += [f"equivalent general size of {r['size']} extrapolated in N" for r in equiv_rows if r["extrapolated"]]
    result["diagnostics"] = summary_diagnostics(
        {"specialist_powerlaw": result.get("specialist_powerlaw"), "general_powerlaw": result.get("general_powerlaw")},
        None, ([result["note"]] if "note" in result else []) + flagged)
    table = best
    if len(sger):
        table = table.merge(sger, on=["size", "role"], how="left")
    if equiv_rows:
        table = table.merge(pd.DataFrame(equiv_rows), on=["size", "role"], how="left")
    optimal = compute_optimal_sizes(df, domain, specialist_ratio)
    result["specialist_beats_general"] = {
        str(size): bool(g.set_index("role").loc["specialist", "perplexity"] < g.set_index("role").loc["general",
                                                                                                  "perplexity"])
        for size, g in best.groupby("size") if set(g["role"]) == {"specialist", "general"}}
    result["point_selection"] = {"intermediate_points": intermediate_points(fit),
                                 "note": "best checkpoints (the power laws' points) among the annealed ones unless "
                                         "intermediate_points; SGER and the compute-optimal sizes read whole "
                                         "validation/test curves"}
    note_unannealed(result, best, f"specialization {domain}")
    write_csv(table, table_out)
    write_csv(optimal, compute_out)
    write_json(law_out, result)
    log.info("specialization %s: specialist beats general at %s", domain, result["specialist_beats_general"])
    return result
