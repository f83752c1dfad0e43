"""Held-out evaluation: token-level loss and perplexity per (checkpoint, suite) of a training run."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from cpt_scaling.core.errors import InputError
from cpt_scaling.core.progress import LogProgress
from cpt_scaling.data.sequences import read_sequences
from cpt_scaling.train.model import load_model
from cpt_scaling.train.runs import run_checkpoints

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pyarrow as pa

#: Columns of the evaluation table and their Arrow types.
COLUMNS = (("checkpoint_tokens", "int64"), ("suite", "string"), ("loss", "float64"), ("perplexity", "float64"),
           ("n_tokens", "int64"))


def schema() -> pa.Schema:
    """The evaluation table's Arrow schema (pyarrow imported here: the forward pass, :func:`sequence_loss`, also
    runs where it is not installed, e.g. bench/gpu_check.py on a bare GPU machine)."""
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])
LOGIT_ROWS = 4096  # positions per LM-head chunk, so full-vocabulary logits never fill memory


@torch.inference_mode()
def sequence_loss(
    model: torch.nn.Module, sequences: np.ndarray, *, batch_size: int = 16, progress: LogProgress | None = None
) -> tuple[float, int]:
    """(summed next-token cross-entropy in nats, number of predicted tokens) of ``model`` on ``sequences``; the
    tokens read are counted in ``progress``."""
    model.eval()
    device = next(model.parameters()).device
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    # Llama/Qwen logits are head(final hidden state); models that scale or cap logits take the full forward.
    plain_head = not any(getattr(model.config, k, None) for k in ("final_logit_softcapping", "logit_scale"))
    total = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = 0
    for start in range(0, len(sequences), batch_size):
        rows = np.ascontiguousarray(sequences[start:start + batch_size], dtype=np.int64)
        ids = torch.from_numpy(rows).to(device)
        targets = ids[:, 1:].reshape(-1)
        if plain_head:
            hidden = decoder(input_ids=ids).last_hidden_state[:, :-1].reshape(-1, model.config.hidden_size)
            for i in range(0, len(targets), LOGIT_ROWS):
                logits = head(hidden[i:i + LOGIT_ROWS]).float()
                total += F.cross_entropy(logits, targets[i:i + LOGIT_ROWS], reduction="sum").double()
        else:
            logits = model(input_ids=ids).logits[:, :-1].reshape(-1, model.config.vocab_size).float()
            total += F.cross_entropy(logits, targets, reduction="sum").double()
        n_tokens += targets.numel()
        if progress is not None:
            progress.update(rows.size)
    return float(total), n_tokens


def evaluate_run(
    run_dir: Path, suites: dict[str, Path], *, batch_size: int = 16, max_sequences: int | None = None
) -> pa.Table:
    """:func:`evaluate_checkpoints` of every checkpoint in ``run_dir/checkpoints.json``."""
    return evaluate_checkpoints(run_checkpoints(Path(run_dir)), suites, batch_size=batch_size,
                                max_sequences=max_sequences)


def evaluate_checkpoints(
    checkpoints: list[tuple[int, Path]], suites: dict[str, Path], *, batch_size: int = 16,
    max_sequences: int | None = None,
) -> pa.Table:
    """Loss (mean token cross-entropy, nats), perplexity and token count per checkpoint and suite.

    ``checkpoints`` are (training tokens, HF checkpoint directory); ``suites`` maps a suite name to a
    ``heldout.parquet``, of which the first ``max_sequences`` sequences are used. Deterministic: eval mode (no
    dropout), fixed batch order, float64 accumulation; weights in bf16 on GPU, under ``torch.inference_mode``.
    """
    data = {name: read_sequences(Path(path))[:max_sequences] for name, path in sorted(suites.items())}
    for name, seqs in data.items():
        if len(seqs) == 0 or seqs.shape[1] < 2:
            raise InputError(str(suites[name]), f"suite {name!r} holds no sequences of length ≥ 2")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import pyarrow as pa

    rows: dict[str, list] = {name: [] for name, _ in COLUMNS}
    progress = LogProgress(log, "held-out loss", total=len(checkpoints) * sum(s.size for s in data.values()),
                           unit="tokens")
    for tokens, path in checkpoints:
        model = load_model(path).to(device)
        model.config.use_cache = False  # one forward per batch: a KV cache would only cost memory
        vocab = model.config.vocab_size
        for name, seqs in data.items():
            if int(seqs.max()) >= vocab:
                raise InputError(str(suites[name]), f"token ids exceed the model's vocabulary ({vocab})")
            total, n = sequence_loss(model, seqs, batch_size=batch_size, progress=progress)
            loss = total / n
            rows["checkpoint_tokens"].append(int(tokens))
            rows["suite"].append(name)
            rows["loss"].append(loss)
            rows["perplexity"].append(math.exp(loss))
            rows["n_tokens"].append(n)
            log.info("checkpoint %s suite %s: loss %.4f over %d tokens", path, name, loss, n)
        del model
    progress.close()
    return pa.table(rows, schema=schema())
