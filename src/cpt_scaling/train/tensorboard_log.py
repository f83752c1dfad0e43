"""TensorBoard output of a training run: the JSONL log's step records mirrored as scalars, against training tokens
(so a WSD trunk's segments and its branches, and runs of different batch sizes, share one axis).

Watch a sweep with ``tensorboard --logdir logs/tensorboard`` (one folder per training artifact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpt_scaling.core.errors import InputError

#: Where the workflow's training jobs write their event files: ``<root>/<run>-<key>/``. Outside the artifact, so
#: an artifact's bytes (and digests) do not depend on wall-clock event file names.
TENSORBOARD_ROOT = "logs/tensorboard"

#: Step-record fields written as scalars, and their TensorBoard tags.
SCALARS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
           "tokens_per_s": "speed/tokens_per_s", "mfu": "speed/mfu", "eta_s": "speed/eta_s"}


class TensorBoardLog:
    """A run's event files under ``log_dir``, starting at ``start_tokens``: the events an earlier attempt wrote
    past that point (a resumed run logs them again; a rerun from scratch, all of them) are hidden by
    TensorBoard's purge marker, as :func:`~cpt_scaling.train.train_log.open_log` drops them from the JSONL."""

    def __init__(self, log_dir: Path, start_tokens: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch finds no tensorboard package
            raise InputError("training.tensorboard", f"needs the tensorboard package ({exc}); install it with "
                             "`pip install tensorboard` or set training.tensorboard: false") from None
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(log_dir), purge_step=start_tokens + 1)  # steps are tokens

    def add(self, record: dict[str, Any]) -> None:
        """The scalars of one ``step`` record of the JSONL log (fields that are None are left out)."""
        for field, tag in SCALARS.items():
            if record.get(field) is not None:
                self.writer.add_scalar(tag, float(record[field]), global_step=int(record["tokens"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
