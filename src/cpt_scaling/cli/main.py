"""``cpt-scaling`` command line: one argparse subcommand per task, each added by a ``register_*`` function.

    cpt-scaling fit LAW --data FILE [--out law.json] [--bootstrap N] [--group COLUMN] [--holdout EXPR]
    cpt-scaling predict --law law.json --data FILE [--out predictions.csv]

Bad input (unreadable file, missing column, NaN/inf, out-of-range values, too few points) prints one line
``cpt-scaling: error: <file>: <problem>`` on stderr and exits with status 2. To add a subcommand, write a
``register_<name>(subparsers)`` that adds its parser and sets ``func``, and append it to ``REGISTRARS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cpt_scaling.cli.cost import register_cost
from cpt_scaling.cli.decide import register_decide
from cpt_scaling.cli.explain import register_explain
from cpt_scaling.cli.next import register_next
from cpt_scaling.cli.train import register_train
from cpt_scaling.cli.verify import register_verify
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.logs import setup_logging
from cpt_scaling.core.paths import refuse_overwrite

Subparsers = Any  # argparse's private _SubParsersAction
log = logging.getLogger("cpt_scaling.cli")

HOLDOUT_HELP = (
    "rows to hold out of the fit and score afterwards: comparisons of columns with numbers, strings, lists and "
    "column aggregates (min, max, mean, median), combined with and/or/not, e.g. \"N == N.max()\" (largest "
    "model), \"D == D.max()\" (largest token segment), \"r in [0.1, 0.9]\"; parsed, never evaluated as code"
)


def _cmd_fit(args: argparse.Namespace) -> int:
    from cpt_scaling.core.atomic import strict_json, write_json
    from cpt_scaling.fit.fitting import fit_law
    from cpt_scaling.fit.holdout import holdout_mask
    from cpt_scaling.fit.points import read_points, validate_points

    where = str(args.data)
    if args.run_noise is not None and not (math.isfinite(args.run_noise) and args.run_noise > 0):
        raise InputError("--run-noise", f"must be a number > 0, got {args.run_noise}")
    if args.base_noise is not None and not (math.isfinite(args.base_noise) and args.base_noise >= 0):
        raise InputError("--base-noise", f"must be a number >= 0 (relative sd), got {args.base_noise}")
    refuse_overwrite(args.out, [("--data", args.data)])
    df = validate_points(read_points(args.data), args.law, where)
    mask = holdout_mask(df, args.holdout, where) if args.holdout else None
    groups = None
    if args.group:
        if args.group not in df.columns:
            raise InputError(where, f"--group column {args.group!r} not found (columns: {', '.join(df.columns)})")
        if df[args.group].isna().any():
            raise InputError(where, f"--group column {args.group!r} has empty values")
        groups = df[args.group].astype(str)
    result = fit_law(
        args.law,
        df,
        huber_delta=args.huber_delta,
        bootstrap=args.bootstrap,
        seed=args.seed,
        holdout=mask,
        coarse=args.coarse_grid,
        groups=groups,
        bootstrap_starts=args.bootstrap_starts,
        where=where,
        run_noise=args.run_noise,
        base_noise=args.base_noise,
    ).to_json()
    result["data"] = where
    if args.group:
        result["bootstrap_info"]["group_column"] = args.group
    if args.holdout:
        result["holdout_expr"] = args.holdout
    if args.out:
        write_json(args.out, result)
    else:
        sys.stdout.write(strict_json(result))
    return 0


def register_fit(subparsers: Subparsers) -> None:
    """``fit LAW --data FILE``: fit a law to a CSV/Parquet of points, write the law JSON."""
    from cpt_scaling.laws import FIT_NAMES

    p = subparsers.add_parser(
        "fit",
        help="fit a scaling law to a CSV/Parquet table of points",
        description="Fit LAW to the points in FILE. Columns: chinchilla N, D, loss; "
        "dcpt/dcpt_l1..l5 N, D, r, loss; cross_domain N, D, r, k1, k2, loss; "
        "split/split_* N, D, D_spec, loss; powerlaw N, loss.",
    )
    p.add_argument("law", choices=FIT_NAMES, metavar="LAW", help=f"one of: {', '.join(FIT_NAMES)}")
    p.add_argument("--data", required=True, type=Path, metavar="FILE", help="CSV or Parquet (.parquet/.pq)")
    p.add_argument("--out", type=Path, metavar="JSON", help="write the law JSON here (default: stdout)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for 95%% percentile intervals (0: none; default 1000)")
    p.add_argument("--group", metavar="COLUMN",
                   help="resample whole groups of rows sharing this column's value (e.g. run: all checkpoints of "
                        "a run together); default: every row on its own")
    p.add_argument("--bootstrap-starts", type=int, default=4, metavar="K",
                   help="starts each bootstrap resample is refitted from (default 4)")
    p.add_argument("--run-noise", type=float, metavar="SD",
                   help="relative sd of a whole group's loss offset (seed-to-seed noise); with one --group per "
                        "size the bootstrap is then parametric with it (the size terms absorb each run's offset)")
    p.add_argument("--base-noise", type=float, metavar="SD",
                   help="relative sd of the loss offset shared by all groups of one model size (one base model); "
                        "the bootstrap adds a fresh offset per size (default: estimated where enough sizes "
                        "identify it, else ignored with a warning; 0: none)")
    p.add_argument("--holdout", metavar="EXPR", help=HOLDOUT_HELP)
    p.add_argument("--huber-delta", type=float, default=1e-3, metavar="DELTA", help="Huber δ on log-loss")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--coarse-grid", action="store_true", help="use the law's small initialisation grid")
    p.set_defaults(func=_cmd_fit)


def _cmd_predict(args: argparse.Namespace) -> int:
    from cpt_scaling.fit.fitting import predict
    from cpt_scaling.fit.points import read_points

    refuse_overwrite(args.out, [("--law", args.law), ("--data", args.data)])
    try:
        law_json = json.loads(Path(args.law).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(args.law), f"cannot read law JSON: {exc}") from None
    if not isinstance(law_json, dict):
        raise InputError(str(args.law), "law JSON must be an object")
    df = read_points(args.data)
    out = df.copy()
    out["predicted_loss"] = predict(law_json, df, where=str(args.data), law_where=str(args.law))
    out["extrapolation"] = _extrapolation(law_json, out)
    far = out["extrapolation"] > WARN_EXTRAPOLATION
    if far.any():
        log.warning("%d of %d prediction(s) lie more than %gx beyond the fit's largest N or compute (up to %.3gx)",
                    int(far.sum()), len(out), WARN_EXTRAPOLATION, float(out["extrapolation"].max()))
    if args.out:
        from cpt_scaling.core.atomic import write_text

        write_text(args.out, out.to_csv(index=False))
    else:
        out.to_csv(sys.stdout, index=False)
    return 0


#: ``predict`` warns when a query lies further than this factor beyond the fit's largest N or compute.
WARN_EXTRAPOLATION = 10.0


def _extrapolation(law_json: dict[str, Any], df: Any) -> Any:
    """Per row: ``max(N/N_max, C/C_max, 1)`` against the fit's range (from its diagnostics or its points)."""
    import pandas as pd

    from cpt_scaling.fit.fitting import extrapolation_factor, fit_range

    fitted = (law_json.get("diagnostics") or {}).get("fit_range")
    if not fitted:
        fitted = fit_range(pd.DataFrame(law_json.get("points_used") or []))
    if "N" not in df.columns:
        return 1.0
    tokens = None
    if "D" in df.columns:
        tokens = df["D"].to_numpy(float) + (df["D_spec"].to_numpy(float) if "D_spec" in df.columns else 0.0)
    return extrapolation_factor(fitted, df["N"].to_numpy(float), tokens)


def register_predict(subparsers: Subparsers) -> None:
    """``predict --law law.json --data FILE``: CSV of the input columns plus ``predicted_loss`` and
    ``extrapolation`` (how far each row lies beyond the fit's largest N and compute; a warning past 10x)."""
    p = subparsers.add_parser("predict", help="predict loss at new points from a fitted law JSON")
    p.add_argument("--law", required=True, type=Path, metavar="JSON", help="output of `cpt-scaling fit`")
    p.add_argument("--data", required=True, type=Path, metavar="FILE", help="CSV or Parquet of points")
    p.add_argument("--out", type=Path, metavar="CSV", help="write here instead of stdout")
    p.set_defaults(func=_cmd_predict)


#: Subcommand registrars, in help order.
REGISTRARS: list[Callable[[Subparsers], None]] = [register_fit, register_predict, register_cost, register_train,
                                                  register_explain, register_next, register_decide, register_verify]


def _version() -> str:
    """The installed distribution's version (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cpt-scaling")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="cpt-scaling",
        description="Domain continued-pretraining scaling studies: fit scaling laws to measured points, predict, "
                    "decide, price a sweep before running it, explain its reruns, propose the next runs and verify "
                    "artifacts. The workflow itself runs with `snakemake` (README).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    setup_logging(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"cpt-scaling: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `cpt-scaling predict ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
