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
* Sizes of a sweep (:func:`size_non_embedding_params`) count ``N`` exactly for the decoder families in
  :data:`FAMILIES` (Llama, Mistral, Qwen2, GPT-NeoX): the key/value width of grouped-query attention, biases and
  norm layout; the plain Llama formula above is the ``llama`` family without GQA or biases.
"""

from __future__ import annotations

from typing import Any


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


# Decoder families whose parameter layout the cost model knows exactly (HF ``model_type`` -> family).
# llama: q/k/v/o projections (biases when ``attention_bias``), gated MLP (biases when ``mlp_bias``), RMSNorm;
# qwen2: the same with q/k/v biases always; gpt_neox: fused qkv and dense with biases (``attention_bias``),
# a plain two-matrix MLP with biases, LayerNorm with biases.
FAMILIES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gpt_neox": "gpt_neox"}


def size_non_embedding_params(size: dict[str, Any]) -> int:
    """Exact non-embedding parameters of a sweep size (``models.sizes.<name>``, filled from ``config.json`` for
    a checkpoint on disk): grouped-query key/value width, biases and the block layout of its ``model_type``.

    Tied embeddings do not change the count (embedding and LM head are both outside ``N``).
    """
    if size.get("n_params_non_embedding"):  # counted on the instantiated model (another architecture)
        return int(size["n_params_non_embedding"])
    family = FAMILIES.get(size.get("model_type") or "llama")
    if family is None:
        raise ValueError(f"model_type {size['model_type']!r} has no parameter formula (known: {sorted(FAMILIES)})")
    d, ff, n_layers = size["d_model"], size["d_ff"], size["n_layers"]
    heads = size["n_heads"]
    head_dim = size.get("head_dim") or d // heads
    q_width, kv_width = heads * head_dim, (size.get("n_kv_heads") or heads) * head_dim
    attn = d * q_width + 2 * d * kv_width + q_width * d
    if family == "gpt_neox":
        bias = size.get("attention_bias") is not False  # GPT-NeoX's default is True
        attn += (q_width + 2 * kv_width + d) if bias else 0
        per_layer = attn + 2 * d * ff + ff + d + 4 * d  # MLP with biases, two LayerNorms with biases
        return n_layers * per_layer + 2 * d
    if family == "qwen2":
        attn += q_width + 2 * kv_width
    elif size.get("attention_bias"):
        attn += q_width + 2 * kv_width + d
    mlp = 3 * d * ff + ((2 * ff + d) if size.get("mlp_bias") else 0)
    return n_layers * (attn + mlp + 2 * d) + d


def size_flops_per_token(size: dict[str, Any], seq_len: int, vocab_size: int) -> float:
    """Training FLOPs per token of a sweep size: ``6·(N + d·V) + 12·L·d·T`` with ``N`` from
    :func:`size_non_embedding_params` and ``V`` the size's embedding rows when known, else ``vocab_size``."""
    n = size_non_embedding_params(size)
    vocab = size.get("vocab_size") or vocab_size
    return float(6 * (n + size["d_model"] * vocab) + 12 * size["n_layers"] * size["d_model"] * seq_len)
