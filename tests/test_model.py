"""Building, saving and loading models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cpt_scaling.core.errors import InputError
from cpt_scaling.train.checkpoints import write_model
from cpt_scaling.train.model import attention_implementation, build_model, load_model

SIZE = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64}


def test_build_model_follows_the_size() -> None:
    model = build_model(SIZE, vocab_size=100, max_seq_len=48)
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 32, 4, 64)
    assert (c.vocab_size, c.max_position_embeddings) == (100, 48)
    assert attention_implementation() == "sdpa"  # no CUDA in the tests
    assert c._attn_implementation == "sdpa"


def test_build_model_rejects_bad_sizes() -> None:
    with pytest.raises(InputError, match=r"model\.n_heads"):
        build_model({**SIZE, "n_heads": 5}, 100, 48)
    with pytest.raises(InputError, match="d_ff"):
        build_model({k: v for k, v in SIZE.items() if k != "d_ff"}, 100, 48)


def test_build_model_is_seeded() -> None:
    torch.manual_seed(3)
    a = build_model(SIZE, 100, 48)
    torch.manual_seed(3)
    b = build_model(SIZE, 100, 48)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("tied", [False, True])
def test_save_and_load_round_trip(tmp_path: Path, tied: bool) -> None:
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).eval()
    write_model(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "generation_config.json",
                                                                     "model.safetensors"]
    loaded = load_model(tmp_path / "ckpt")
    ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    assert loaded.config.tie_word_embeddings == tied


def test_load_model_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"config\.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"model\.safetensors"):
        load_model(tmp_path)
