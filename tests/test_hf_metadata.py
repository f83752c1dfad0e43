"""Shapes, parameter counts and vocabularies of local HF checkpoints and tokenizers, read from their JSON."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_checkpoints import make_tokenizer

from cpt_scaling.config.hf_metadata import read_checkpoint_shape, tokenizer_vocab_size
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import model as cost
from cpt_scaling.data.tokenizer import document_separator
from cpt_scaling.train.model import count_parameters

SEEDS = sorted((Path(__file__).resolve().parents[1] / "data" / "demo" / "seeds").glob("*.jsonl.gz"))

CONFIGS = {
    # Qwen2.5-7B as published (config.json of the model card): GQA 28/4 heads, untied, q/k/v biases.
    "qwen2.5-7b": tf.Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                 tie_word_embeddings=False),
    "qwen2-tied": tf.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=1536, tie_word_embeddings=True),
    "llama-gqa": tf.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
                                num_key_value_heads=2, vocab_size=1000),
    "llama-bias-headdim": tf.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                         num_attention_heads=8, num_key_value_heads=2, vocab_size=1000,
                                         attention_bias=True, mlp_bias=True, head_dim=48),
    "mistral": tf.MistralConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
                                num_key_value_heads=2, vocab_size=1000),
    "gpt-neox": tf.GPTNeoXConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=8,
                                 vocab_size=1000),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_non_embedding_count_from_config_json_equals_the_instantiated_model(name: str, tmp_path: Path) -> None:
    config = CONFIGS[name]
    config.save_pretrained(str(tmp_path))
    shape = read_checkpoint_shape(tmp_path)
    with torch.device("meta"):
        model = tf.AutoModelForCausalLM.from_config(config)
    assert cost.size_non_embedding_params(shape) == count_parameters(model)[1]


def test_qwen2_5_7b_n_is_below_the_llama_formula_without_gqa(tmp_path: Path) -> None:
    """The old Llama-style count (no GQA) overstated N by 8-15 % for Qwen2.5."""
    CONFIGS["qwen2.5-7b"].save_pretrained(str(tmp_path))
    shape = read_checkpoint_shape(tmp_path)
    exact = cost.size_non_embedding_params(shape)
    assert exact == 6_525_621_760
    plain = cost.n_params_non_embedding(shape["n_layers"], shape["d_model"], shape["d_ff"])
    assert 1.08 < plain / exact < 1.15


def test_tokenizer_vocabulary_from_its_json_equals_transformers(tmp_path: Path) -> None:
    tok = make_tokenizer(tmp_path, SEEDS[:1])
    assert tokenizer_vocab_size(tmp_path) == len(tok) == 1500
    assert tok.eos_token_id != 0


def test_chat_end_of_turn_eos_is_replaced_by_the_end_of_document_token_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tok = make_tokenizer(tmp_path, SEEDS[:1])
    assert document_separator(tok, "tok") == tok.convert_tokens_to_ids("<|endoftext|>")
    tok.eos_token = "<|im_end|>"  # what an instruct tokenizer declares
    with caplog.at_level(logging.WARNING):
        sep = document_separator(tok, "tok")
    assert sep == tok.convert_tokens_to_ids("<|endoftext|>") != tok.eos_token_id
    assert "<|im_end|>" in caplog.text and "<|endoftext|>" in caplog.text


def test_a_config_json_without_decoder_fields_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert_like"}')
    with pytest.raises(InputError, match=r"config\.json"):
        read_checkpoint_shape(tmp_path)


def test_a_local_tokenizer_is_installed_byte_for_byte(tmp_path: Path) -> None:
    """The sweep's copy of a user's tokenizer (and so every exported checkpoint's) is the user's files unchanged:
    save_pretrained added loading options (is_local, local_files_only) to tokenizer_config.json."""
    from hf_checkpoints import make_llama_tokenizer

    from cpt_scaling.data.tokenizer_source import install_tokenizer

    repo = Path(__file__).resolve().parents[1]
    make_llama_tokenizer(tmp_path / "theirs", [repo / "data" / "demo" / "seeds" / "legal.jsonl.gz"])
    install_tokenizer(tmp_path / "ours", files=[], vocab_size=0, path=str(tmp_path / "theirs"))
    theirs = {p.name: p.read_bytes() for p in (tmp_path / "theirs").iterdir()}
    ours = {p.name: p.read_bytes() for p in (tmp_path / "ours").iterdir()}
    assert ours == theirs and b"local_files_only" not in ours["tokenizer_config.json"]
