"""Glue between Snakemake's ``snakemake`` object and library calls, shared by every workflow script.

A rule's job parameters arrive as one canonical JSON string (``params.job``); its artifact spec (``params.spec``)
is written to ``spec.json`` beside the artifact after the library call succeeds. Bad input becomes one clear error
line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

from cpt_scaling.atomic import write_text
from cpt_scaling.errors import InputError
from cpt_scaling.logs import setup_logging

log = logging.getLogger("cpt_scaling")


@contextlib.contextmanager
def rule_job(smk: Any) -> Iterator[dict[str, Any]]:
    """Set up logging and threads, yield the job dict, then write ``spec.json`` if the rule declares one."""
    setup_logging(smk.log[0] if smk.log else None)
    try:
        import torch

        torch.set_num_threads(max(1, int(smk.threads)))
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    job = json.loads(smk.params.job) if hasattr(smk.params, "job") else {}
    log.info("rule %s: %s", smk.rule, ", ".join(str(o) for o in smk.output))
    try:
        yield job
    except InputError as exc:
        log.error("%s", exc)
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        log.exception("rule %s failed", smk.rule)
        raise
    if hasattr(smk.params, "spec") and hasattr(smk.output, "spec"):
        write_text(smk.output.spec, json.dumps(json.loads(smk.params.spec), indent=2, sort_keys=True) + "\n")
