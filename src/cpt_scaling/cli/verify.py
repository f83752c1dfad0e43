"""``cpt-scaling verify [PATH...]``: check artifacts against the content digests their jobs recorded.

    cpt-scaling verify                      # every artifact under ./artifacts
    cpt-scaling verify artifacts/train      # one stage, or one artifact directory

Each damaged file is named with what is wrong and how to redo its artifact; the exit status is 1 when any is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cpt_scaling.core.digests import redo_hint, verify_tree
from cpt_scaling.core.errors import InputError


def _cmd_verify(args: argparse.Namespace) -> int:
    checked, damaged = 0, []
    for root in args.paths or [Path("artifacts")]:
        if not Path(root).exists():
            raise InputError(str(root), "not found (an artifacts tree, a stage folder or an artifact)")
        n, bad = verify_tree(root)
        checked, damaged = checked + n, damaged + bad
    for d in damaged:
        print(f"DAMAGED {d.artifact / d.file}: {d.problem}; {redo_hint(d.artifact)}", file=sys.stderr)
    artifacts = len({d.artifact for d in damaged})
    print(f"verified {checked} files: {len(damaged)} damaged in {artifacts} artifact(s)")
    return 1 if damaged else 0


def register_verify(subparsers: Any) -> None:
    """``verify [PATH...]``: every recorded artifact file against its digest."""
    p = subparsers.add_parser(
        "verify", help="check artifacts against the content digests their jobs recorded",
        description="Check every file of the artifacts under PATH (default: ./artifacts) against the sha256 its "
                    "job recorded in digests.json when it wrote it; name each damaged file and the command "
                    "that redoes its artifact. Exit status 1 when any file is damaged.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="an artifacts tree, a stage folder or one artifact directory (default: artifacts)")
    p.set_defaults(func=_cmd_verify)
