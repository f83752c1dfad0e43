"""Specialisation vs model size (after Malaquias Junior et al.): specialist and generalist at matched compute.

For each model size, the specialist is the continued-pretraining run at the specialist ratio and the generalist the
run of the same budget from the same base (same N, same tokens: matched compute) on the unfiltered pool, as in the
seed (or, with ``studies.specialization.generalist: general``, the ratio-0 run on the general class). Each is
scored at its best checkpoint (among the annealed ones unless ``fit.intermediate_points``), selected on the domain
*validation* suite and reported on the *test* suites: domain perplexity, and forgetting (general test loss minus
the base model's). SGER per size is the seed's, from annealed, budget-matched curves
(:mod:`cpt_scaling.studies.sger`): the generalist's tokens to the specialist's lowest annealed validation loss over
the specialist's, interpolated between the generalist's annealed WSD branch ends, with a bootstrap interval. Power laws
ppl = k·N^p are fitted across sizes for both roles; the general size whose fitted perplexity equals the
specialist's is reported separately (``N_general_equivalent``, ``compute_ratio_across_sizes``), with bootstrap
intervals. The optimal model size per compute is read off the test curves
on a budget grid common to the sizes (:func:`compute_optimal_sizes`).
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
from cpt_scaling.studies.sger import annealed_sger

log = logging.getLogger(__name__)

GENERALIST_DEFINITION = {
    "pool": "continued pretraining on the unfiltered pool (every classified document, its domain share included) "
            "from the same base, budget and schedule as the specialist (the seed's generalist)",
    "general": "the ratio-0 continued-pretraining run on the general class (no domain text)",
}

SGER_COLUMNS = ["size", "N", "role", "sger", "sger_lo", "sger_hi", "sger_status", "sger_interval",
                "sger_general_points", "C_specialist", "C_general", "C_general_own_min"]
MIN_SIZES = 3  # a two-parameter power law across sizes needs at least three sizes


def generalist_kind(df: pd.DataFrame) -> str:
    """Which generalist the tables hold: ``pool`` (runs of kind ``generalist``: continued pretraining on the
    unfiltered pool, the seed's) when there are any, else ``general`` (the ratio-0 CPT run)."""
    return "pool" if (df["kind"] == "generalist").any() else "general"


def _run_rows(df: pd.DataFrame, role: str, specialist_ratio: float, budget: int,
              curve: bool = False) -> pd.DataFrame:
    """Rows of one role's runs at matched compute, the specialist's ``budget`` (D = 0 included): its CPT runs,
    or the generalist's. A pool generalist trained longer (``generalist_tokens_factor``) is cut at ``budget``
    where it has no run of that budget (a WSD trunk's branches); with ``curve``, every run of it (its branches,
    or its separate runs: SGER reads their annealed ends)."""
    if role == "general" and generalist_kind(df) == "pool":
        gen = df[df["kind"] == "generalist"]
        if curve:
            return gen
        longest = gen[gen["budget"] == gen["budget"].max()]
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
               size: str) -> tuple[pd.DataFrame, float | None]:
    """One role's annealed domain validation points of ``size`` (columns D, N, loss, compute = 6·N·D; D > 0),
    every run of a pool generalist, and the curve's start: its loss at D = 0, or the base model's."""
    r = with_annealed(_run_rows(df, role, specialist_ratio, budget, curve=True))
    r = r[(r["size"] == size) & (r["suite"] == domain) & (r["split"] == "val")]
    start = r.loc[r["D"] == 0, "loss"]
    r = r[(r["D"] > 0) & r["annealed"].astype(bool)]
    r = r.groupby("D", as_index=False).agg(N=("N", "first"), loss=("loss", "mean")).sort_values("D")
    return r.assign(compute=6.0 * r["N"] * r["D"]), (float(start.mean()) if len(start) else
                                                     _base_val_loss(df, domain, size))


def _base_val_loss(df: pd.DataFrame, domain: str, size: str) -> float | None:
    """The base model's domain validation loss at D = 0 (the start of every curve of ``size``), if evaluated."""
    pre = df[df["kind"].isin(BASE_KINDS) & (df["size"] == size) & (df["suite"] == domain) & (df["split"] == "val")]
    pre = pre[pre["D"] == pre["D"].max()]
    return float(pre["loss"].mean()) if len(pre) else None


def sger_per_size(df: pd.DataFrame, domain: str, specialist_ratio: float, limit: float,
                  fit: dict[str, Any] | None = None) -> pd.DataFrame:
    """SGER per size from the annealed points of the specialist's and the generalist's validation curves, with
    its bootstrap interval (:func:`cpt_scaling.studies.sger.annealed_sger`; ``fit`` gives run_noise and seed)."""
    fit = fit or {}
    df = with_annealed(df)
    budget = specialist_budget(df, specialist_ratio)
    rows = []
    for size in sorted(set(df.loc[df["kind"] == "cpt", "size"].dropna())):
        spec, _ = _val_curve(df, domain, "specialist", specialist_ratio, budget, size)
        gen, start = _val_curve(df, domain, "general", specialist_ratio, budget, size)
        if spec.empty or gen.empty:
            continue
        out = annealed_sger(spec["compute"].to_numpy(), spec["loss"].to_numpy(), gen["compute"].to_numpy(),
                            gen["loss"].to_numpy(), general_start_loss=start, run_noise=fit.get("run_noise"),
                            limit=limit, seed=int(fit.get("seed", 0)))
        rows.append({"size": size, "N": int(spec["N"].iloc[0]), "role": "specialist", "sger": out["sger"],
                     "sger_lo": out["sger_lo"], "sger_hi": out["sger_hi"], "sger_status": out["status"],
                     "sger_interval": out["sger_interval"], "sger_general_points": out["n_general_points"],
                     "C_specialist": out["C_specialist"], "C_general": out["C_general"],
                     "C_general_own_min": out["C_general_own_min"]})
        if out["status"] != "interpolated":
            log.warning("SGER %s %s: %s (the generalist's annealed points do not reach the specialist's loss)",
                        domain, size, out["status"])
    return pd.DataFrame(rows, columns=SGER_COLUMNS)


def _test_curves(df: pd.DataFrame, domain: str, role: str, specialist_ratio: float, budget: int
                 ) -> dict[str, pd.DataFrame]:
    """Each size's domain test loss along its run(s) of ``role``: columns N, compute, loss (D > 0)."""
    r = _role_rows(df, role, specialist_ratio, budget)
    r = r[(r["suite"] == domain) & (r["split"] == "test")].assign(compute=lambda x: 6.0 * x["N"] * x["D"])
    return {size: g.groupby("compute", as_index=False).agg(N=("N", "first"), loss=("loss", "mean"))
            for size, g in r.groupby("size")}


def compute_optimal_sizes(df: pd.DataFrame, domain: str, specialist_ratio: float, run_noise: float | None = None,
                          bootstrap: int = 400, seed: int = 0, n_budgets: int = 12) -> pd.DataFrame:
    """The best size per compute budget 6·N·D, per role, on one budget grid common to the sizes (``n_budgets``
    log-spaced between the second-smallest start and the second-largest end of the sizes' curves): at each
    budget the candidates are the sizes whose curve reaches it (loss linear in log-compute between
    checkpoints); a budget fewer than two sizes reach has no decision (no row). ``p_best``: the share of
    bootstrap resamples (each candidate's loss with an independent relative offset of sd ``run_noise``) that
    pick the same size; ``N_lo``/``N_hi`` span the sizes any 2.5 % of them pick (without ``run_noise``: the
    best)."""
    budget = specialist_budget(df, specialist_ratio)
    rng = np.random.default_rng(seed)
    rows = []
    for role in ("specialist", "general"):
        curves = _test_curves(df, domain, role, specialist_ratio, budget)
        if len(curves) < 2:
            continue
        reach = pd.DataFrame({s: (g["compute"].min(), g["compute"].max()) for s, g in curves.items()}).T
        lo, hi = sorted(reach[0])[1], sorted(reach[1])[-2]  # where at least two sizes may overlap
        for c in np.geomspace(lo, hi, n_budgets) if lo <= hi else []:
            cand = [s for s in curves if reach.loc[s, 0] * (1 - 1e-9) <= c <= reach.loc[s, 1] * (1 + 1e-9)]
            if len(cand) < 2:
                continue
            loss = {s: float(np.interp(math.log(c), np.log(curves[s]["compute"]), curves[s]["loss"])) for s in cand}
            best = min(loss, key=loss.__getitem__)
            picks = [best]
            if run_noise:
                noisy = np.array([[loss[s] * (1 + run_noise * rng.standard_normal()) for s in cand]
                                  for _ in range(bootstrap)])
                picks = [cand[i] for i in noisy.argmin(axis=1)]
            share = pd.Series(picks).value_counts(normalize=True)
            kept = [int(curves[s]["N"].iloc[0]) for s in share[share >= 0.025].index] + [int(curves[best]["N"].iloc[0])]
            rows.append({"role": role, "compute": float(c), "best_size": best, "N": int(curves[best]["N"].iloc[0]),
                         "N_lo": min(kept), "N_hi": max(kept), "p_best": float(share.get(best, 0.0)),
                         "candidates": ",".join(sorted(cand, key=lambda s: curves[s]["N"].iloc[0])),
                         "loss": loss[best]})
    return pd.DataFrame(rows, columns=["role", "compute", "best_size", "N", "N_lo", "N_hi", "p_best", "candidates",
                                       "loss"])


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
                              "sger_definition": "C_general / C_specialist per size from the annealed points of the "
                                                 "domain validation curves (continued-pretraining compute 6·N·D), "
                                                 "with a parametric bootstrap interval (fit.run_noise)",
                              "sger_limit": sger_limit, "generalist": generalist_kind(df),
                              "generalist_definition": GENERALIST_DEFINITION[generalist_kind(df)]}
    sger = sger_per_size(df, domain, specialist_ratio, sger_limit, fit)
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
    table = best.merge(sger.drop(columns="N"), on=["size", "role"], how="left")  # SGER columns even if none
    if equiv_rows:
        table = table.merge(pd.DataFrame(equiv_rows), on=["size", "role"], how="left")
    optimal = compute_optimal_sizes(df, domain, specialist_ratio, fit.get("run_noise"), seed=int(fit["seed"]))
    result["specialist_beats_general"] = {
        str(size): bool(g.set_index("role").loc["specialist", "perplexity"] < g.set_index("role").loc["general",
                                                                                                  "perplexity"])
        for size, g in best.groupby("size") if set(g["role"]) == {"specialist", "general"}}
    result["point_selection"] = {"intermediate_points": intermediate_points(fit),
                                 "note": "best checkpoints (the power laws' points) among the annealed ones unless "
                                         "intermediate_points; SGER reads annealed points only; the "
                                         "compute-optimal sizes read whole test curves"}
    note_unannealed(result, best, f"specialization {domain}")
    write_csv(table, table_out)
    write_csv(optimal, compute_out)
    write_json(law_out, result)
    log.info("specialization %s: specialist beats general at %s", domain, result["specialist_beats_general"])
    return result
