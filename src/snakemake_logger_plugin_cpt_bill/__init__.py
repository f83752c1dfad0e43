"""Snakemake logger plugin ``cpt-bill``: a dry run of this workflow ends with its bill (GPU-hours, peak GPU and
host memory, SLURM submissions, wall-clock at the run's parallelism), the totals ``cpt-scaling cost`` gives for
the same targets. Named in the profiles (``logger: [cpt-bill]``); outside a dry run, or for another workflow,
it does nothing. The pricing is :mod:`cpt_scaling.dryrun.bill`'s."""

from __future__ import annotations

import sys
from logging import LogRecord
from typing import Any

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

#: The fields of a ``JOB_INFO`` record the bill reads.
FIELDS = ("jobid", "rule_name", "input", "output", "wildcards", "resources")


class LogHandler(LogHandlerBase):
    """Collects the job records of a dry run; prints the bill when Snakemake closes its log."""

    def __post_init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.printed = False

    def emit(self, record: LogRecord) -> None:
        if getattr(record, "event", None) == LogEvent.JOB_INFO and self.common_settings.dryrun:
            self.records.append({name: getattr(record, name, None) for name in FIELDS})

    def close(self) -> None:
        if self.records and not self.printed:
            self.printed = True
            from cpt_scaling.dryrun.bill import bill

            text = bill(self.records)
            if text:
                print(text, file=sys.stdout, flush=True)
        super().close()

    # Snakemake keeps its own console output only when no plugin claims the stream; the bill is one print at
    # the end, so this plugin leaves the stream to Snakemake.
    @property
    def writes_to_stream(self) -> bool:
        return False

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return False

    @property
    def has_formatter(self) -> bool:
        return False

    @property
    def needs_rulegraph(self) -> bool:
        return False
