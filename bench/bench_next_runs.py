"""Benchmark: do the runs `cpt-scaling next` proposes shrink the usage-2 interval more than random runs of equal cost?

    .venv/bin/python bench/bench_next_runs.py [--seeds 50] [--bootstrap 200] [--budget-fraction 0.5]
        [--first-seed 0] [--per-seed CSV]
    .venv/bin/python bench/bench_next_runs.py --rounds [--seeds 20] [--bootstrap 200] [--max-rounds 40]
        [--target-draws 3]

Truth: the L3 D-CPT law of bench_coverage (E 2, A 60, B 40, C 0.3, α 0.34, β 0.30, γ 0.5, η 0.6, ε 0.05).
Starting design: 2 sizes (N = 2.5e4, 1e5) x 3 domain ratios (0, 0.5, 1) x 2 budgets (D = 32k, 65k tokens), 4
geometrically spaced checkpoints per run (as the workflow spaces them): 12 runs, 48 points. Noise correlated within
a run as in bench_coverage: a log-loss offset per run (sd 1 %) plus 0.3 % per checkpoint. Candidates: 3 sizes (the
two plus 2.2e5) x 6 ratios (0, 0.1, 0.25, 0.5, 0.75, 1) x 4 budgets (32k..262k), less the runs already done, 4
checkpoints each, priced 6·N·D at the schema's cost defaults. Decision: usage 2 at N = 2.2e5 with 32k domain tokens.

Per seed: fit L3 to the starting design with a bootstrap over whole runs (``--bootstrap`` resamples, 200 by default
to keep the bench to minutes; the workflow uses 1000), ask ``proposal.propose`` (default estimator ``bootstrap``)
for runs within a budget of ``--budget-fraction`` (0.5 by default) of the starting design's GPU-hours, and draw
random candidates (a random order, each taken if it still fits) with the same budget. Each set of runs is then
"trained" (points drawn from the truth with fresh noise), the law refitted on start + new runs with the same
bootstrap, and the usage-2 interval width measured. Seeds are independent and deterministic, so
``--first-seed``/``--per-seed`` split a run over processes. The last line is ``median_width_ratio=<random/proposed>
calibration=<median realised/expected width>``; the line before it gives the exponent κ (``proposal.CALIBRATION``)
that would make the calibration 1 on these seeds.

``--rounds``: `next` used in rounds (:func:`cpt_scaling.fit.rounds.run_rounds`). Grid: 3 sizes (2.5e4, 1e5, 2.2e5)
x 9 ratios (0, 0.125, ..., 1) x 3 budgets (32k, 65k, 131k tokens) = 81 runs; start: 6 runs (2 sizes x ratios 0,
0.5, 1 at 32k). Per seed: fit all 81 runs once (fresh noise) for the target width, then from the start fit ->
propose 5 % of the full grid's GPU-hours among the runs not yet done -> "train" them -> refit, until the usage-2
width is at most the grid's, `next` proposes nothing although a run is affordable (stalled), or the candidates run
out. The grid's width is the median over ``--target-draws`` (3) noise draws of the fit of all 81 runs (one draw is
itself a noisy target). Last line ``stalled_share=<share of seeds stalled> hours_to_grid_width=<median GPU-h share
of the grid>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import logging
import time

import numpy as np
import pandas as pd

from cpt_scaling.fit import candidates, decision_spec, decisions, proposal
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.rounds import run_rounds
from cpt_scaling.laws import LAWS
from cpt_scaling.plan.next_runs import cost_assumptions

L3_TRUE = {"E": 2.0, "A": 60.0, "B": 40.0, "C": 0.3, "alpha": 0.34, "beta": 0.30, "gamma": 0.5, "eta": 0.6,
           "epsilon": 0.05}
START_SIZES, START_RATIOS, START_TOKENS = (2.5e4, 1e5), (0.0, 0.5, 1.0), (32768.0, 65536.0)
CAND_SIZES, CAND_RATIOS = (2.5e4, 1e5, 2.2e5), (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
CAND_TOKENS = (32768.0, 65536.0, 131072.0, 262144.0)
CHECKPOINTS = 4
DECISION_N, DOMAIN_TOKENS = 2.2e5, 32768.0
RUN_SD, POINT_SD = 0.01, 0.003


def run_points(runs: list[tuple[float, float, float]], rng: np.random.Generator, tag: str) -> pd.DataFrame:
    """Points of runs ``(N, D, r)`` drawn from the truth with per-run correlated noise; column ``run``."""
    rows = []
    for i, (n, d, r) in enumerate(runs):
        offset = rng.normal(0.0, RUN_SD)
        for k in range(CHECKPOINTS):
            rows.append({"N": n, "D": d / 2.0 ** (CHECKPOINTS - 1 - k), "r": r, "run": f"{tag}{i}",
                         "noise": offset + rng.normal(0.0, POINT_SD)})
    df = pd.DataFrame(rows)
    law = LAWS["dcpt"]
    true = law.predict(L3_TRUE, {c: df[c].to_numpy(float) for c in law.columns})
    return df.assign(loss=true * np.exp(df["noise"])).drop(columns="noise")


def fit(df: pd.DataFrame, bootstrap: int, seed: int) -> dict:
    return fit_law("dcpt", df[["N", "D", "r", "loss"]], bootstrap=bootstrap, groups=df["run"], seed=seed).to_json()


def width(law: dict) -> float:
    u2 = decisions.dcpt_ratio_for_limited_domain_data(law, N=DECISION_N, domain_tokens=DOMAIN_TOKENS)
    return float(u2["ratio_hi"] - u2["ratio_lo"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--budget-fraction", type=float, default=0.5)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--per-seed", metavar="CSV", help="also write one row per seed here")
    parser.add_argument("--simulations", type=int, default=256)
    parser.add_argument("--method", choices=proposal.METHODS, default="bootstrap")
    parser.add_argument("--rounds", action="store_true", help="run `next` in rounds instead (see rounds_main)")
    parser.add_argument("--max-rounds", type=int, default=40)
    parser.add_argument("--target-draws", type=int, default=3,
                        help="--rounds: the target width is the median over this many noise draws of the grid's fit")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.rounds:
        rounds_main(args)
        return
    cost = cost_assumptions()
    start = [(n, d, r) for n, r, d in itertools.product(START_SIZES, START_RATIOS, START_TOKENS)]
    start_hours = sum(candidates.gpu_hours(6.0 * n * d, cost) for n, d, _ in start)
    budget = args.budget_fraction * start_hours
    table = pd.DataFrame([{"N": n, "D": d, "r": r} for n, r, d in itertools.product(CAND_SIZES, CAND_RATIOS,
                                                                                      CAND_TOKENS)
                          if (n, d, r) not in start])
    cands = candidates.read_candidates(table.assign(checkpoints=CHECKPOINTS), "bench candidates", cost)
    spec = decision_spec.DecisionSpec("usage2", N=DECISION_N, domain_tokens=DOMAIN_TOKENS)
    r_true = decisions.dcpt_ratio_for_limited_domain_data({"law": "dcpt", "params": L3_TRUE}, N=DECISION_N,
                                                          domain_tokens=DOMAIN_TOKENS)["ratio"]
    print(f"truth: usage-2 optimum r = {r_true:.4f} (N = {DECISION_N:g}, {DOMAIN_TOKENS:g} domain tokens); start "
          f"design {len(start)} runs ({start_hours:.3g} GPU-h), {len(cands)} candidates, budget {budget:.3g} GPU-h "
          f"({args.budget_fraction:g} x start), {args.bootstrap} resamples, {args.simulations} simulations")
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rng = np.random.default_rng(1000 + seed)
        base = run_points(start, rng, "start")
        law = fit(base, args.bootstrap, seed)
        t1 = time.perf_counter()
        prop = proposal.propose({"domain": law}, {"domain": base}, cands, spec, budget,
                                 simulations=args.simulations, seed=seed, method=args.method)
        t_next = time.perf_counter() - t1
        proposed = [(c.N, c.D, c.r) for c in cands if c.name in set(prop.chosen["candidate"])]
        order = rng.permutation(len(cands))
        left, rand = budget, []
        for i in order:
            c = cands[i]
            if c.gpu_hours <= left:
                rand.append((c.N, c.D, c.r))
                left -= c.gpu_hours
        spent_random = budget - left
        w = {}
        for label, runs in (("proposed", proposed), ("random", rand)):
            new = run_points(runs, rng, label) if runs else base.iloc[:0]
            w[label] = width(fit(pd.concat([base, new], ignore_index=True), args.bootstrap, seed))
        expected = prop.chosen["expected_width"].iloc[-1] if len(prop.chosen) else prop.current_width
        rows.append({"seed": seed, "start": width(law), "current": prop.current_width, "expected": expected,
                     "rho": (expected / prop.current_width) ** (1.0 / prop.calibration),
                     "proposed": w["proposed"], "random": w["random"],
                     "n_proposed": len(proposed), "n_random": len(rand), "spent_proposed": prop.spent,
                     "spent_random": spent_random, "next_s": t_next})
        if len(rows) % 10 == 0:
            df = pd.DataFrame(rows)
            print(f"  {len(rows)} seeds, {time.perf_counter() - t0:.0f} s: proposed narrower in "
                  f"{np.mean(df['proposed'] < df['random']):.2f}, median random/proposed "
                  f"{np.median(df['random'] / df['proposed']):.2f}", flush=True)
    df = pd.DataFrame(rows)
    if args.per_seed:
        df.to_csv(args.per_seed, index=False)
    secs = time.perf_counter() - t0
    win = float(np.mean(df["proposed"] < df["random"]))
    ratio = float(np.median(df["random"] / df["proposed"]))
    print(f"{args.seeds} seeds in {secs:.0f} s (next: median {df['next_s'].median():.2f} s per call)")
    print("| quantity | median | 10-90 % |")
    print("| --- | --- | --- |")
    for key in ("start", "expected", "proposed", "random", "n_proposed", "n_random", "spent_proposed",
                "spent_random"):
        p10, p90 = np.percentile(df[key], [10, 90])
        print(f"| {key} | {df[key].median():.4g} | {p10:.4g}-{p90:.4g} |")
    print(f"proposed interval narrower than random in {win:.2f} of seeds (target >= 0.80)")
    calibration = float(np.median(df["proposed"] / df["expected"]))
    print(f"median realised/expected width {calibration:.3f} (target [0.8, 1.25]) at kappa "
          f"{proposal.CALIBRATION:g}; kappa that makes it 1 on these seeds: {kappa_fit(df):.3f}")
    print(f"median_width_ratio={ratio:.3f} calibration={calibration:.3f}")


def kappa_fit(df: pd.DataFrame) -> float:
    """The exponent κ for which the median of realised / (current · ρ^κ) is 1 on these seeds (bisection)."""
    lo, hi = 0.0, 3.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        med = np.median(df["proposed"] / (df["current"] * df["rho"] ** mid))
        lo, hi = (mid, hi) if med < 1.0 else (lo, mid)  # realised below expected: shrink faster
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------------------------------ --rounds
ROUND_SIZES, ROUND_RATIOS, ROUND_TOKENS = (2.5e4, 1e5, 2.2e5), tuple(np.linspace(0.0, 1.0, 9)), (32768.0, 65536.0,
                                                                                                   131072.0)
ROUND_START = [(n, 32768.0, r) for n in (2.5e4, 1e5) for r in (0.0, 0.5, 1.0)]
ROUND_SHARE = 0.05


def rounds_main(args: argparse.Namespace) -> None:
    """``--rounds``: from a 6-run start, fit -> propose 5 % of the full grid's GPU-hours -> train -> refit, per seed
    until the usage-2 interval is as narrow as the full grid's (that seed's fit of all 81 runs) or `next` stops."""
    cost = cost_assumptions()
    grid = [(n, d, r) for n in ROUND_SIZES for r in ROUND_RATIOS for d in ROUND_TOKENS]
    full_hours = sum(candidates.gpu_hours(6.0 * n * d, cost) for n, d, _ in grid)
    start_hours = sum(candidates.gpu_hours(6.0 * n * d, cost) for n, d, _ in ROUND_START)
    table = pd.DataFrame([{"N": n, "D": d, "r": r} for n, d, r in grid if (n, d, r) not in ROUND_START])
    cands = candidates.read_candidates(table.assign(checkpoints=CHECKPOINTS), "bench candidates", cost)
    spec = decision_spec.DecisionSpec("usage2", N=DECISION_N, domain_tokens=DOMAIN_TOKENS)
    print(f"rounds: full grid {len(grid)} runs ({full_hours:.3g} GPU-h), start {len(ROUND_START)} runs, "
          f"{ROUND_SHARE:g} of the grid per round, {args.bootstrap} resamples, {args.simulations} simulations, "
          f"estimator {args.method}, target = median of {args.target_draws} fits of the grid")
    out = []
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rng = np.random.default_rng(5000 + seed)
        target = float(np.median([width(fit(run_points(grid, rng, "grid"), args.bootstrap, seed))
                                  for _ in range(args.target_draws)]))
        tags = itertools.count()

        def train(chosen: list, rng: np.random.Generator = rng, tags: itertools.count = tags) -> dict:
            return {"domain": run_points([(c.N, c.D, c.r) for c in chosen], rng, f"r{next(tags)}-")}

        res = run_rounds({"domain": run_points(ROUND_START, rng, "start")}, cands, spec,
                         fit=lambda pts, seed=seed: {"domain": fit(pts["domain"], args.bootstrap, seed)},
                         train=train, budget_per_round=ROUND_SHARE * full_hours, target_width=target,
                         start_gpu_hours=start_hours, max_rounds=args.max_rounds, simulations=args.simulations,
                         seed=seed, method=args.method)
        tab = res.table()
        last = tab.iloc[-1]
        out.append({"seed": seed, "status": res.status, "rounds": int(last["round"]), "runs": int(last["runs"]),
                    "target": target, "width": float(last["width"]),
                    "hours_share": float(last["gpu_hours"]) / full_hours})
        print(f"  seed {seed}: {res.status} after {int(last['round'])} rounds, {int(last['runs'])} runs, width "
              f"{last['width']:.4g} (grid {target:.4g}), {last['gpu_hours'] / full_hours:.2f} of the grid's GPU-h "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    df = pd.DataFrame(out)
    if args.per_seed:
        df.to_csv(args.per_seed, index=False)
    stalled = float(np.mean(df["status"] == "stalled"))
    short = float(np.mean(df["status"] != "reached"))
    reached = df[df["status"] == "reached"]
    share = float(reached["hours_share"].median()) if len(reached) else float("nan")
    print(f"{len(df)} seeds: {df['status'].value_counts().to_dict()}; `next` stopped proposing (no affordable run "
          f"expected to narrow the interval) before the grid's width in {stalled:.2f} (target 0); the grid's width "
          f"not reached for any reason in {short:.2f}; median GPU-h to reach it {share:.3f} of the full grid's")
    print(f"stalled_share={stalled:.3f} hours_to_grid_width={share:.3f}")

if __name__ == "__main__":
    main()
