"""Glue between Snakemake's ``snakemake`` object and library calls, shared by every workflow script.

A rule's job parameters arrive as one canonical JSON string (``params.job``); its artifact spec (``params.spec``)
is written to ``spec.json`` beside the artifact after the library call succeeds. Bad input becomes one clear error
line and a non-zero exit instead of a traceback. Temporaries that a killed earlier attempt of the same job left
(library writes go to a hidden temp and are renamed into place) are removed first: Snakemake's lock makes this
job the only writer of its outputs in this checkout, and the artifact's lease (:mod:`cpt_scaling.core.lease`) the only
writer of its keyed artifact directory across checkouts. A job whose Snakemake is killed stops
(:mod:`cpt_scaling.core.orphans`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cpt_scaling.core.atomic import remove_stale_temps, write_text
from cpt_scaling.core.digests import record_digests
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.lease import artifact_lease
from cpt_scaling.core.logs import setup_logging
from cpt_scaling.core.orphans import stop_when_orphaned

log = logging.getLogger("cpt_scaling")


def _launch_rank() -> int:
    """This process's rank in a torchrun or multi-task srun launch (0 when launched once)."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def rule_step(smk: Any, steps: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
    """The step of ``steps`` (a workflow script's table keyed by rule name) for this job's rule.

    A rule the table does not know (renamed or added in ``rules/*.smk`` without its step) fails here, naming the
    rule and the rules the script handles, instead of silently running another rule's step.
    """
    try:
        return steps[smk.rule]
    except KeyError:
        raise RuntimeError(f"this workflow script has no step for rule {smk.rule!r} (it handles: "
                           f"{', '.join(sorted(steps))}); add the rule to its table in workflow_scripts/") from None


@contextlib.contextmanager
def rule_job(smk: Any) -> Iterator[dict[str, Any]]:
    """Set up logging and threads, yield the job dict, then write ``spec.json`` if the rule declares one."""
    setup_logging(smk.log[0] if smk.log else None)
    stop_when_orphaned()
    keyed = "key" in dict(smk.wildcards.items())
    with contextlib.ExitStack() as stack:
        if _launch_rank() == 0:  # one lease and one cleaner per job: other ranks of a launch may already write
            if keyed:  # one writer per artifact, also across checkouts sharing artifacts_dir
                try:
                    stack.enter_context(artifact_lease(Path(smk.output[0]).parent))
                except InputError as exc:
                    _fail(exc)
            remove_stale_temps(list(smk.output), [Path(smk.output[0]).parent] if keyed else [])
        yield from _run(smk)
        if keyed and _launch_rank() == 0:  # what later jobs read is checked against what this job wrote
            record_digests(Path(smk.output[0]).parent)


def _fail(exc: InputError) -> None:
    """Bad input: one line on stderr (and in the log), exit status 1."""
    log.error("%s", exc)
    print(f"ERROR: {exc}", file=sys.stderr)
    sys.exit(1)


def _run(smk: Any) -> Iterator[dict[str, Any]]:
    """The job proper: threads, the job dict, errors as one line, then ``spec.json``."""
    torch = sys.modules.get("torch")  # only rules that compute with torch have imported it; others skip its ~1 s
    if torch is not None:
        torch.set_num_threads(max(1, int(smk.threads)))
    job = json.loads(smk.params.job) if hasattr(smk.params, "job") else {}
    log.info("rule %s: %s", smk.rule, ", ".join(str(o) for o in smk.output))
    try:
        yield job
    except InputError as exc:
        _fail(exc)
    except Exception:
        log.exception("rule %s failed", smk.rule)
        raise
    if hasattr(smk.params, "spec") and hasattr(smk.output, "spec"):
        write_text(smk.output.spec, json.dumps(json.loads(smk.params.spec), indent=2, sort_keys=True) + "\n")
