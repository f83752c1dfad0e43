"""``cpt-scaling explain [TARGET...]``: which config keys and raw files make each job of a dry run run.

    cpt-scaling explain results/figures/dcpt_legal.pdf --configfile my_study.yaml --profile profiles/slurm
    cpt-scaling explain --configfile my_study.yaml --json explain.json -q
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cpt_scaling.config.load import check_config_files
from cpt_scaling.core.errors import InputError

REPO = Path(__file__).resolve().parents[3]


def _cmd_explain(args: argparse.Namespace) -> int:
    from cpt_scaling.core.atomic import write_text
    from cpt_scaling.dryrun.explain import explain, format_table, to_json

    workdir = Path(args.directory)
    snakefile = args.snakefile or (workdir / "Snakefile" if (workdir / "Snakefile").is_file()
                                   else REPO / "Snakefile")
    for f in args.configfile:
        if not (workdir / f).is_file():
            raise InputError(str(f), "config file not found")
    check_config_files(workdir / f for f in args.configfile)  # before Snakemake could render a template
    if args.profile and not Path(args.profile).exists():
        raise InputError(str(args.profile), "profile not found")
    explained = explain(args.targets, snakefile=snakefile, workdir=workdir, configfiles=args.configfile,
                        profile=args.profile)
    if args.json:
        write_text(args.json, json.dumps(to_json(explained), indent=2, sort_keys=True) + "\n")
    if not args.quiet:
        sys.stdout.write(format_table(explained, max_rows=args.max_rows) + "\n")
    return 0


def register_explain(subparsers: Any) -> None:
    """``explain [TARGET...]``: per job of a dry run, the config keys and raw files that differ from disk."""
    p = subparsers.add_parser(
        "explain", help="name the config keys and raw files that make each job of a dry run run",
        description="For each job `snakemake -n TARGET...` would run, diff its artifact spec against the nearest "
                    "artifact of the same stage and name on disk, following upstream keys, and name the dotted "
                    "config keys and raw input files whose values differ; jobs with no such artifact are 'new'. "
                    "Fits, figures and tables inherit the changes of the jobs they read.")
    p.add_argument("targets", nargs="*", metavar="TARGET", help="files or rules (default: the default target)")
    p.add_argument("--configfile", action="append", default=[], metavar="FILE", help="config file (repeatable)")
    p.add_argument("--profile", metavar="DIR", help="Snakemake profile: rerun triggers")
    p.add_argument("--snakefile", type=Path, help="default: ./Snakefile, else the project's")
    p.add_argument("--directory", default=".", metavar="DIR", help="working directory of the workflow")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    p.add_argument("--max-rows", type=int, default=500, help="rows of the printed table")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing (with --json)")
    p.set_defaults(func=_cmd_explain)
