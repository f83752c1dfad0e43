"""Next-token cross-entropy computed chunk by chunk through the LM head, so a micro-batch's full logits never exist.

Used where Liger's fused linear cross-entropy cannot be (ZeRO-3: it reads ``lm_head.weight`` without calling the
module, so ZeRO-3's gather hook never runs). Here every chunk calls ``lm_head`` itself, so ZeRO-3 gathers the
weight for it (and again when the chunk is recomputed in the backward pass), and its logits live only inside a
non-reentrant activation checkpoint: the forward keeps each chunk's input rows and its summed loss, the backward
recomputes one chunk at a time. Peak: one chunk's logits, their fp32 copy and the softmax gradients,
``LOSS_CHUNK_ROWS · V · (e + 12)`` bytes, instead of the micro-batch's (:mod:`cpt_scaling.cost.memory`).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import CausalLMOutputWithPast

from cpt_scaling.cost.memory import LOSS_CHUNK_ROWS

IGNORE_INDEX = -100


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_cross_entropy(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor,
                          rows: int = LOSS_CHUNK_ROWS) -> torch.Tensor:
    """Mean next-token cross-entropy of ``head(hidden)`` against ``labels`` shifted by one (as HF's causal-LM
    loss), over chunks of ``rows`` positions whose logits are recomputed in the backward pass."""
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = labels[:, 1:].reshape(-1).to(h.device)
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for start in range(0, len(targets), rows):
        total = total + checkpoint(_chunk_loss, head, h[start:start + rows], targets[start:start + rows],
                                   use_reentrant=False)
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def _forward(self: Any, input_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
             **kwargs: Any) -> CausalLMOutputWithPast:
    """A causal LM's forward whose loss is :func:`chunked_cross_entropy` (no logits returned with labels)."""
    if labels is None:
        return type(self).forward(self, input_ids=input_ids, **kwargs)
    hidden = self.model(input_ids=input_ids, **kwargs).last_hidden_state
    return CausalLMOutputWithPast(loss=chunked_cross_entropy(self.lm_head, hidden, labels))


def apply_chunked_loss(model: torch.nn.Module) -> bool:
    """Give a decoder with ``model`` (the stack) and ``lm_head`` (a plain linear head) the chunked loss; False
    (unchanged) for any other architecture or a head that scales or caps its logits."""
    plain = not any(getattr(model.config, k, None) for k in ("final_logit_softcapping", "logit_scale"))
    if not (plain and hasattr(model, "model") and isinstance(getattr(model, "lm_head", None), torch.nn.Linear)):
        return False
    model.forward = types.MethodType(_forward, model)
    return True
