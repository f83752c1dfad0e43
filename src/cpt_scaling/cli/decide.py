"""``cpt-scaling decide``: the D-CPT decisions (usages 1-3) of a D-CPT study JSON as a table a script can read,
with ``value``, ``lo`` and ``hi`` per row, as the workflow's ``results/tables/dcpt_usage_<domain>.csv`` has them
(:func:`cpt_scaling.studies.dcpt.usages`).

    cpt-scaling decide --law results/laws/dcpt_legal.json --points results/tables/dcpt_points_legal.csv \\
        --out decisions.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cpt_scaling.core.errors import InputError


def _study_settings(args: argparse.Namespace, doc: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """``studies.dcpt`` (schema defaults, then --configfile, then the flags) and the usage-2 domain tokens."""
    from cpt_scaling.config.load import check_config_files, load_schema, read_config_file

    props = load_schema()["properties"]["studies"]["properties"]["dcpt"]["properties"]
    study = {k: v.get("default") for k, v in props.items()}
    if args.configfile is not None:
        check_config_files([args.configfile])
        study.update(((read_config_file(args.configfile).get("studies") or {}).get("dcpt")) or {})
    if args.tolerance is not None:
        study["general_tolerance"] = args.tolerance
    if args.compute:
        study["compute_budgets"] = list(args.compute)
    tokens = args.domain_tokens if args.domain_tokens is not None else study.get("domain_tokens")
    if tokens is None:  # the study's own usage-2 rows were computed at D * ratio domain tokens
        rows = [u for u in doc.get("usages") or [] if u.get("usage") == 2 and u.get("ratio")]
        tokens = float(rows[0]["D"]) * float(rows[0]["ratio"]) if rows else None
    if tokens is None or not float(tokens) > 0:
        raise InputError("--domain-tokens", "usage 2 needs the domain tokens available (--domain-tokens or "
                                            "studies.dcpt.domain_tokens in --configfile)")
    return study, float(tokens)


def _cmd_decide(args: argparse.Namespace) -> int:
    from cpt_scaling.core.atomic import write_json, write_text
    from cpt_scaling.core.paths import refuse_overwrite
    from cpt_scaling.fit.points import read_points
    from cpt_scaling.fit.proposal import json_rows
    from cpt_scaling.studies.dcpt import usages

    refuse_overwrite(args.out, [("--law", args.law), ("--points", args.points), ("--configfile", args.configfile)])
    try:
        doc = json.loads(Path(args.law).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(args.law), f"cannot read law JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("study") != "dcpt":
        raise InputError(str(args.law), "not a D-CPT study JSON (results/laws/dcpt_<domain>.json): decide needs "
                                        "its domain_loss, general_loss and base")
    for key in ("domain_loss", "general_loss", "base"):
        if not isinstance(doc.get(key), dict):
            raise InputError(str(args.law), f"D-CPT study JSON lacks {key!r}")
    points = read_points(args.points)
    for col in ("target", "N", "D", "ratio", "loss"):
        if col not in points.columns:
            raise InputError(str(args.points), f"points need a {col!r} column, as results/tables/"
                                               "dcpt_points_<domain>.csv has")
    study, tokens = _study_settings(args, doc)
    table = usages(doc, points, study, tokens)
    if args.out is not None and args.out.suffix.lower() == ".json":
        write_json(args.out, {"law": str(args.law), "domain": doc.get("domain"), "domain_tokens": tokens,
                              "general_tolerance": study["general_tolerance"], "decisions": json_rows(table)})
    elif args.out is not None:
        write_text(args.out, table.to_csv(index=False))
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


def register_decide(subparsers: Any) -> None:
    """``decide --law STUDY_JSON --points CSV``: usages 1-3 with their 95 % intervals as CSV or JSON."""
    p = subparsers.add_parser(
        "decide", help="write the D-CPT decisions (usages 1-3, value with lo/hi) of a D-CPT study JSON",
        description="Usage 1 (largest domain ratio within the general-loss tolerance) and usage 2 (best ratio for "
                    "limited domain data) per base-model size, usage 3 (compute-optimal N) per compute budget; each "
                    "with lo/hi from the fit's bootstrap resamples and its extrapolation factor, as the workflow's "
                    "dcpt_usage table.")
    p.add_argument("--law", required=True, type=Path, metavar="JSON", help="results/laws/dcpt_<domain>.json")
    p.add_argument("--points", required=True, type=Path, metavar="FILE",
                   help="its points (results/tables/dcpt_points_<domain>.csv)")
    p.add_argument("--out", type=Path, metavar="CSV|JSON", help="write here (JSON for a .json name; default stdout)")
    p.add_argument("--configfile", type=Path, metavar="FILE", help="config: studies.dcpt (tolerance, domain tokens, "
                   "compute budgets)")
    p.add_argument("--tolerance", type=float, help="usage 1: T (default studies.dcpt.general_tolerance)")
    p.add_argument("--domain-tokens", type=float, help="usage 2: domain tokens (default studies.dcpt.domain_tokens, "
                   "else the study JSON's own usage-2 rows)")
    p.add_argument("--compute", type=float, nargs="+", metavar="FLOPS", help="usage 3: compute budgets")
    p.set_defaults(func=_cmd_decide)
