"""``cpt-scaling cost [TARGET...]``: price what a dry run of the targets would run, before running it, with each
job's predicted peak GB per GPU (a sweep whose training jobs exceed ``cost.gpu_memory_gb`` fails when parsed).

    cpt-scaling cost results/figures/dcpt_legal.pdf --configfile my_study.yaml --profile profiles/slurm
    cpt-scaling cost --configfile config/examples/paper_qwen.yaml --json cost.json --csv cost.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cpt_scaling.config.load import check_config_files
from cpt_scaling.core.errors import InputError

REPO = Path(__file__).resolve().parents[3]


def _cmd_cost(args: argparse.Namespace) -> int:
    from cpt_scaling.dryrun.cost_report import cost_report, write_outputs

    snakefile = args.snakefile or (Path(args.directory) / "Snakefile" if (Path(args.directory) / "Snakefile")
                                   .is_file() else REPO / "Snakefile")
    for f in args.configfile:
        if not (Path(args.directory) / f).is_file():
            raise InputError(str(f), "config file not found")
    # Before Snakemake reads them: it would render a YTE-templated file (Python expressions) on load.
    check_config_files(Path(args.directory) / f for f in args.configfile)
    if args.profile and not Path(args.profile).exists():
        raise InputError(str(args.profile), "profile not found")
    report = cost_report(args.targets, snakefile=snakefile, workdir=args.directory,
                         configfiles=args.configfile, profile=args.profile)
    write_outputs(report, args.json, args.csv)
    if not args.quiet:
        sys.stdout.write(report.format_table(max_rows=args.max_rows) + "\n")
    return 0


def register_cost(subparsers: Any) -> None:
    """``cost [TARGET...]``: per job and in total, tokens, FLOPs, GPU-hours, GB per GPU and wall-clock of a dry
    run."""
    p = subparsers.add_parser(
        "cost", help="price the jobs a dry run would run (tokens, FLOPs, GPU-hours, GB per GPU, wall-clock)",
        description="List the jobs `snakemake -n TARGET...` would run (finished artifacts cost nothing) and "
                    "price them with the cost model: FLOPs = tokens*(6*(N + d*V) + 12*L*d*T), GPU-hours = "
                    "FLOPs/(peak*MFU)/3600 from the config's cost section, wall-clock at the profile's jobs, "
                    "and each job's predicted peak GB per GPU (the memory model, cpt_scaling.cost.memory). "
                    "Evaluation jobs: forward FLOPs of their suites on one GPU.")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="files or rules (default: the default target)")
    p.add_argument("--configfile", action="append", default=[], metavar="FILE",
                   help="config file (repeatable)")
    p.add_argument("--profile", metavar="DIR", help="Snakemake profile: parallelism and rerun triggers")
    p.add_argument("--snakefile", type=Path, help="default: ./Snakefile, else the project's")
    p.add_argument("--directory", default=".", metavar="DIR", help="working directory of the workflow")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    p.add_argument("--csv", type=Path, metavar="OUT", help="write one CSV row per job")
    p.add_argument("--max-rows", type=int, default=200, help="rows of the printed table")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing (with --json/--csv)")
    p.set_defaults(func=_cmd_cost)
