"""The one cost model: parameters and training FLOPs of a Llama-style decoder.

Used for SLURM resources, the dry-run cost report and the MFU that training logs. Conventions:

* ``N`` = non-embedding parameters (:func:`n_params_non_embedding`), counted exactly for a Llama-style block
  with a gated (SwiGLU) MLP and RMSNorm, no biases:
  ``N = L·(2·d² + 2·d·d_kv + 3·d·d_ff + 2·d) + d`` (q and o projections, k and v projections of width
  ``d_kv`` = d_model unless grouped-query attention, gate/up/down MLP, two norms per block, the final norm).
  Token embedding and LM head (``d·V`` each) are not in ``N``.
* FLOPs per training token (forward + backward = 3 × forward, a multiply-add = 2 FLOPs):
  ``6·(N + d·V) + 12·L·d·T`` — 6N for the block weights, ``6·d·V`` for the LM head matmul (the embedding
  lookup costs no matmul), and ``12·L·d·T`` for attention scores and weighted values (``QKᵀ`` and ``AV``:
  4·d·T per token and layer forward, without the causal-mask halving), as in Kaplan et al. 2020 / PaLM
  appendix B.
"""

from __future__ import annotations


def n_params_non_embedding(n_layers: int, d_model: int, d_ff: int, *, kv_dim: int | None = None) -> int:
    """Exact non-embedding parameter count ``L·(2d² + 2·d·d_kv + 3·d·d_ff + 2d) + d`` (see module docstring).

    ``kv_dim`` is the total key/value width (n_kv_heads · head_dim); it defaults to ``d_model`` (no GQA).
    """
    kv = d_model if kv_dim is None else kv_dim
    per_layer = 2 * d_model * d_model + 2 * d_model * kv + 3 * d_model * d_ff + 2 * d_model
    return n_layers * per_layer + d_model


def flops_per_token(
    n_layers: int, d_model: int, d_ff: int, seq_len: int, vocab_size: int, *, kv_dim: int | None = None
) -> float:
    """Training FLOPs per token: ``6·(N + d·V) + 12·L·d·T`` (N from :func:`n_params_non_embedding`)."""
    n = n_params_non_embedding(n_layers, d_model, d_ff, kv_dim=kv_dim)
    return float(6 * (n + d_model * vocab_size) + 12 * n_layers * d_model * seq_len)


def train_flops(
    n_layers: int,
    d_model: int,
    d_ff: int,
    seq_len: int,
    vocab_size: int,
    tokens: int,
    *,
    kv_dim: int | None = None,
) -> float:
    """Total FLOPs of training on ``tokens`` tokens: ``tokens · flops_per_token(...)``."""
    return float(tokens) * flops_per_token(n_layers, d_model, d_ff, seq_len, vocab_size, kv_dim=kv_dim)
