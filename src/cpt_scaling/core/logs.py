"""Logging setup shared by the CLI and the workflow adaptors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to ``log_file`` (the rule's log)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    # compilers: setuptools' compiler, whose gcc commands DeepSpeed's op builders log while probing for libraries.
    for noisy in ("fontTools", "matplotlib", "DeepSpeed", "torch.distributed", "compilers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
