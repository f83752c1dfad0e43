"""``cpt-scaling next``: which candidate runs shrink a decision's 95 % interval most per GPU-hour
(:mod:`cpt_scaling.fit.proposal`).

    cpt-scaling next --law results/laws/dcpt_legal.json --points results/tables/dcpt_points_legal.csv \\
        --candidates candidates.csv --decision usage2 --budget 200 --out next.csv

``--out`` CSV: the chosen runs, each with the current interval (``current_lo``/``current_hi``) and the expected
interval after it and the runs before it (``expected_lo``/``expected_hi``); ``--out`` JSON (a ``.json`` name): the
decision, current interval, calibration and the chosen runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cpt_scaling.core.errors import InputError


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read law JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(str(path), "law JSON must be an object")
    return doc


def _laws(args: argparse.Namespace, doc: dict[str, Any]
          ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The domain-loss law, the general-loss law (or None) and the study's base losses (or None)."""
    from cpt_scaling.fit.decision_spec import laws_of
    from cpt_scaling.fit.decisions import DCPT_NAMES

    dom, gen, base = laws_of(doc, str(args.law))
    if args.general_law is not None:
        gen = _read_json(args.general_law)
        if gen.get("law") not in DCPT_NAMES:
            raise InputError(str(args.general_law), f"not a D-CPT law JSON (law {gen.get('law')!r})")
    return dom, gen, base


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from cpt_scaling.config.load import check_config_files, read_config_file

    check_config_files([path])
    raw = read_config_file(path)
    cost = raw.get("cost") or {}
    for key in ("peak_flops_per_gpu", "expected_mfu"):
        v = cost.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 or
                              (key == "expected_mfu" and v > 1)):
            bound = " <= 1" if key == "expected_mfu" else ""
            raise InputError(str(path), f"cost.{key} must be a positive number{bound}, got {v!r}")
    return raw


def _cmd_next(args: argparse.Namespace) -> int:
    from cpt_scaling.core.atomic import write_json, write_text
    from cpt_scaling.core.paths import refuse_overwrite
    from cpt_scaling.fit import candidates, decision_spec, proposal
    from cpt_scaling.fit.points import read_points
    from cpt_scaling.plan.next_runs import cost_assumptions

    refuse_overwrite(args.out, [("--law", args.law), ("--points", args.points), ("--candidates", args.candidates),
                                ("--configfile", args.configfile), ("--general-law", args.general_law)])
    decision_spec.check_decision(args.decision)
    doc = _read_json(args.law)
    dom, gen, base = _laws(args, doc)
    need_general = args.decision == "usage1"
    if need_general and gen is None:
        raise InputError(str(args.law), "usage1 needs the general-loss fit: pass a D-CPT study JSON "
                                        "(results/laws/dcpt_<domain>.json) or --general-law")
    cfg = _config(args.configfile)
    points = decision_spec.split_points(read_points(args.points), str(args.points), need_general)
    pdom = points["domain"]
    spec = decision_spec.decision_spec(
        args.decision, pdom, study=(cfg.get("studies") or {}).get("dcpt"), base=base,
        usages=doc.get("usages") or [], N=args.N, D=args.D, tolerance=args.tolerance,
        base_general_loss=args.base_general_loss, domain_tokens=args.domain_tokens, compute=args.compute,
        ratio=args.ratio, where=str(args.law))
    if not (np.isfinite(args.budget) and args.budget > 0):
        raise InputError("--budget", f"must be a positive number, got {args.budget}")
    cost = cost_assumptions(cfg.get("cost"))
    cands = candidates.read_candidates(
        read_points(args.candidates), str(args.candidates), cost,
        seq_len=int((cfg.get("shards") or {}).get("seq_len") or 128),
        vocab_size=int((cfg.get("tokenizer") or {}).get("vocab_size") or 2048),
        default_checkpoints=candidates.default_checkpoints(pdom, (cfg.get("cpt") or {}).get("checkpoints")))
    if args.wsd_decay_fraction is not None:  # the points are WSD branch ends: their trunks can be extended
        done = pdom[["N", "D", "r"]].drop_duplicates().to_numpy(float)
        cands = candidates.price_increments(cands, candidates.trunks_of([tuple(x) for x in done]),
                                            args.wsd_decay_fraction, where="--wsd-decay-fraction")
    laws = {"domain": dom} if not need_general else {"domain": dom, "general": gen}
    prop = proposal.propose(laws, points, cands, spec, float(args.budget), simulations=args.simulations,
                            seed=args.seed, method=args.method, where=str(args.law))
    csv = prop.chosen.to_csv(index=False)
    if args.out is not None and args.out.suffix.lower() == ".json":
        write_json(args.out, prop.to_json())
    elif args.out is not None:
        write_text(args.out, csv)
    sys.stdout.write(proposal.format_table(prop, max_rows=args.max_rows) + "\n")
    if args.out is None:
        sys.stdout.write("\n" + csv)
    return 0


def register_next(subparsers: Any) -> None:
    """``next --law L --points P --candidates C --decision D --budget H``: the runs to do next."""
    from cpt_scaling.fit.decision_spec import SUPPORTED
    from cpt_scaling.fit.proposal import METHODS

    p = subparsers.add_parser(
        "next", help="rank candidate runs by expected shrinkage of a decision's interval per GPU-hour",
        description="From the bootstrap ensemble of a fitted D-CPT law, simulate each candidate run's checkpoints, "
                    "reweight the ensemble by their likelihood (importance weights), and choose greedily, within "
                    "--budget GPU-hours, the runs with the largest expected shrinkage of the decision's 95 % "
                    "interval per GPU-hour (expected widths calibrated on bench/bench_next_runs.py; printed). "
                    "Candidates CSV: D, r and N (priced 6*N*D) or the shape n_layers, "
                    "d_model, n_heads, d_ff (priced tokens*size_flops_per_token); optional name/size, checkpoints. "
                    "GPU-hours = FLOPs/(peak_flops_per_gpu*expected_mfu)/3600 (--configfile's cost section, else "
                    "the schema's defaults). usage3's width is in decades of N.")
    p.add_argument("--law", required=True, type=Path, metavar="JSON",
                   help="`cpt-scaling fit dcpt` output or a D-CPT study JSON (results/laws/dcpt_<domain>.json)")
    p.add_argument("--points", required=True, type=Path, metavar="FILE",
                   help="the points the law was fitted on (N, D, r, loss; optional run, target)")
    p.add_argument("--candidates", required=True, type=Path, metavar="CSV", help="candidate runs, one per row")
    p.add_argument("--decision", required=True, choices=SUPPORTED,
                   help="the D-CPT decision whose interval to narrow: usage1 (largest domain ratio within the "
                        "general-loss tolerance), usage2 (best ratio for limited domain data), usage3 (model size "
                        "for a compute budget)")
    p.add_argument("--budget", required=True, type=float, metavar="GPU_HOURS", help="GPU-hours to spend")
    p.add_argument("--out", type=Path, metavar="CSV|JSON",
                   help="write the chosen runs with the current and expected intervals (CSV; JSON for a .json name)")
    p.add_argument("--configfile", type=Path, metavar="FILE", help="config: cost assumptions, seq_len, vocabulary, "
                   "checkpoints per run, studies.dcpt (tolerance, domain tokens)")
    p.add_argument("--general-law", type=Path, metavar="JSON", help="usage1 with a single-law --law: the general fit")
    p.add_argument("--N", type=float, help="model size of the decision (usage1/2; default the largest in --points)")
    p.add_argument("--D", type=float, help="usage1: tokens (default the largest in --points)")
    p.add_argument("--tolerance", type=float, help="usage1: T (default studies.dcpt.general_tolerance, 0.03)")
    p.add_argument("--base-general-loss", type=float, help="usage1: the base model's general loss")
    p.add_argument("--domain-tokens", type=float, help="usage2: domain tokens available")
    p.add_argument("--compute", type=float, help="usage3: FLOPs (default 10x the largest run)")
    p.add_argument("--ratio", type=float, help="usage3: domain ratio (default the best in --points)")
    p.add_argument("--simulations", type=int, default=256, help="simulated outcomes per candidate (default 256)")
    p.add_argument("--method", choices=METHODS, default="bootstrap",
                   help="expected-width estimator: bootstrap (default; mimics the refit's run bootstrap), posterior "
                        "(each run counted once), linear (ensemble Kalman variance update)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wsd-decay-fraction", type=float, metavar="F",
                   help="the points are WSD branch ends (cpt.budgets: branches, cpt.decay_fraction F): a candidate "
                        "of the size and ratio of a trunk in --points is an extension priced at its increment (new "
                        "trunk segment plus decay), not a separate run")
    p.add_argument("--max-rows", type=int, default=15, help="rows of the printed ranking")
    p.set_defaults(func=_cmd_next)
