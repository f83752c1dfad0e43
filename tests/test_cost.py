"""The cost model against an independent parameter count and a FLOP counter on the real model."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

from cpt_scaling.cost.model import flops_per_token, n_params_non_embedding, train_flops
from cpt_scaling.train.model import build_model, count_parameters, model_shape


@pytest.mark.parametrize(
    ("n_layers", "d_model", "n_heads", "d_ff"), [(2, 64, 4, 176), (3, 96, 6, 256), (1, 32, 2, 64)]
)
def test_non_embedding_params_match_the_model(n_layers: int, d_model: int, n_heads: int, d_ff: int) -> None:
    model = build_model({"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff}, 300, 64)
    params = dict(model.named_parameters())
    counted = sum(p.numel() for n, p in params.items() if "embed_tokens" not in n and "lm_head" not in n)
    assert n_params_non_embedding(n_layers, d_model, d_ff) == counted
    assert count_parameters(model) == (counted + 2 * 300 * d_model, counted)


def test_grouped_query_attention_params() -> None:
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    shape = model_shape(config)
    assert shape["kv_dim"] == 16
    expected = count_parameters(model)[1]
    n = n_params_non_embedding(shape["n_layers"], shape["d_model"], shape["d_ff"], kv_dim=shape["kv_dim"])
    assert n == expected


def test_flops_per_token_matches_a_flop_counter() -> None:
    """A forward+backward pass counts 6·(matmul params + d·V) + 12·L·d·T FLOPs per token; the formula's 6N
    also covers the 2L+1 RMSNorm gains (no matmul), which is the only difference."""
    n_layers, d_model, d_ff, vocab, seq_len, batch = 2, 64, 176, 256, 128, 2
    config = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_ff,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=seq_len, attn_implementation="eager")
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, vocab, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    counted = counter.get_total_flops() / (batch * seq_len)
    formula = flops_per_token(n_layers, d_model, d_ff, seq_len, vocab)
    assert formula - counted == 6 * (2 * n_layers + 1) * d_model


def test_train_flops_scales_with_tokens() -> None:
    assert train_flops(2, 64, 176, 128, 256, 1000) == 1000 * flops_per_token(2, 64, 176, 128, 256)
    # 6N + 6dV + 12LdT, by hand for L=1, d=2, d_ff=3, T=4, V=5: N = 8+8+18+4+2 = 40
    assert flops_per_token(1, 2, 3, 4, 5) == 6 * 40 + 6 * 2 * 5 + 12 * 1 * 2 * 4
