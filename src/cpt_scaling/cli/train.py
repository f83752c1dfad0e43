"""``cpt-scaling train``: one training run from a JSON spec (what multi-process launches run in each process)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _cmd_train(args: argparse.Namespace) -> int:
    from cpt_scaling.train.spec_types import TrainSpec
    from cpt_scaling.train.trainer import train

    train(TrainSpec.from_json(json.loads(Path(args.spec).read_text())), Path(args.out))
    return 0


def register_train(subparsers: Any) -> None:
    """``train --spec JSON --out DIR``: train (or resume) one run."""
    p = subparsers.add_parser("train", help="train or resume one run from a spec (see cpt_scaling.train.trainer)")
    p.add_argument("--spec", required=True, type=Path, metavar="JSON", help="trainer spec")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="run directory")
    p.set_defaults(func=_cmd_train)
