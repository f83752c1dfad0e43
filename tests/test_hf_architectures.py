"""Local checkpoints of the decoder families a user brings (Llama, Mistral, Qwen2, GPT-NeoX) load, evaluate and
count like the instantiated model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as tf

from cpt_scaling.config.hf_metadata import read_checkpoint_shape
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import model as cost
from cpt_scaling.evaluate.heldout import sequence_loss
from cpt_scaling.train.model import count_parameters, load_model

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "vocab_size": 300, "max_position_embeddings": 64}
CONFIGS = {
    "llama": tf.LlamaConfig(**SMALL, num_key_value_heads=2),
    "mistral": tf.MistralConfig(**SMALL, num_key_value_heads=2),
    "qwen2": tf.Qwen2Config(**SMALL, num_key_value_heads=2, tie_word_embeddings=True),
    "gpt_neox": tf.GPTNeoXConfig(**SMALL),
}


def checkpoint_config(tmp_path: Path, sizes: dict[str, Path], seq_len: int = 64) -> dict:
    """A raw config whose model sizes are the local checkpoints ``sizes`` (name -> directory), on the demo data."""
    root = Path(__file__).resolve().parents[1]
    return {"data": {"seeds": {c: [str(root / f"data/demo/seeds/{c}.jsonl.gz")] for c in ("general", "legal")},
                     "pool": [str(root / "data/demo/pool/pool-00.jsonl.gz")]},
            "domains": {"legal": {"ratios": [0.0, 1.0]}}, "tokenizer": {"vocab_size": 300}, "cpt": {"tokens": [8192]},
            "models": {"sizes": {name: {"base_checkpoint": str(path)} for name, path in sizes.items()}},
            "shards": {"seq_len": seq_len}, "artifacts_dir": str(tmp_path / "a"), "results_dir": str(tmp_path / "r")}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_checkpoint_loads_and_its_chunked_loss_equals_the_full_forward(family: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(CONFIGS[family]).save_pretrained(str(tmp_path))
    model = load_model(tmp_path, dtype=torch.float32)
    assert cost.size_non_embedding_params(read_checkpoint_shape(tmp_path)) == count_parameters(model)[1]
    rows = np.random.default_rng(0).integers(0, 300, size=(5, 24))
    total, n = sequence_loss(model, rows, batch_size=2)
    ids = torch.from_numpy(rows)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    want = F.cross_entropy(logits.reshape(-1, 300), ids[:, 1:].reshape(-1), reduction="sum").item()
    assert n == 5 * 23 and total == pytest.approx(want, rel=1e-5)


def test_an_architecture_without_a_formula_is_counted_on_the_meta_device(tmp_path: Path) -> None:
    """Gemma (model_type 'gemma') has no closed-form count here: the config counts its instantiated model."""
    from cpt_scaling.config.load import normalise_config

    config = tf.GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=16)
    config.save_pretrained(str(tmp_path / "gemma"))
    with torch.device("meta"):
        want = count_parameters(tf.AutoModelForCausalLM.from_config(config))[1]
    size = normalise_config(checkpoint_config(tmp_path, {"g": tmp_path / "gemma"}), "cfg.yaml")["models"]["sizes"]["g"]
    assert size["model_type"] == "gemma" and cost.size_non_embedding_params(size) == want


def test_a_seq_len_beyond_the_checkpoints_positions_is_refused_at_parse_time(tmp_path: Path) -> None:
    """A Llama checkpoint built for 256 positions: shards.seq_len 512 stops the parse naming both numbers and the
    checkpoint's config.json; 256 parses."""
    from cpt_scaling.config.load import normalise_config

    tf.LlamaConfig(**{**SMALL, "max_position_embeddings": 256}, num_key_value_heads=2).save_pretrained(
        str(tmp_path / "ll"))
    raw = checkpoint_config(tmp_path, {"ll": tmp_path / "ll"}, seq_len=512)
    with pytest.raises(InputError) as info:
        normalise_config(raw, "cfg.yaml")
    assert str(info.value) == (f"cfg.yaml: shards.seq_len: 512 is longer than models.sizes.ll's max_position_embeddings"
                               f" 256 ({tmp_path / 'll' / 'config.json'}); use seq_len <= 256")
    raw["shards"]["seq_len"] = 256
    assert normalise_config(raw, "cfg.yaml")["shards"]["seq_len"] == 256


def test_one_checkpoint_under_two_size_names_is_refused_naming_both(tmp_path: Path) -> None:
    """Through a symlink (caught when the config is read) or as a byte-identical copy (caught when the plan finds
    two artifacts with identical inputs): one line naming both, never an internal key collision."""
    import shutil

    from cpt_scaling.config.load import normalise_config
    from cpt_scaling.plan.sweep import build_plan

    model = tf.LlamaForCausalLM(tf.LlamaConfig(**SMALL, num_key_value_heads=2))
    model.save_pretrained(str(tmp_path / "base"))
    (tmp_path / "link").symlink_to(tmp_path / "base")
    shutil.copytree(tmp_path / "base", tmp_path / "copy")
    def raw(other: str) -> dict:
        return checkpoint_config(tmp_path, {"a": tmp_path / "base", "b": tmp_path / other}, seq_len=64)

    with pytest.raises(InputError) as info:
        normalise_config(raw("link"), "cfg.yaml")
    assert str(info.value).startswith("cfg.yaml: models.sizes.b: duplicates models.sizes.a")
    with pytest.raises(InputError) as info:
        build_plan(normalise_config(raw("copy"), "cfg.yaml"), tmp_path / "digests.json").by_key  # noqa: B018
    message = str(info.value)
    assert "-a-" in message and "-b-" in message and "identical inputs under two names" in message, message


def test_an_exported_checkpoint_differs_from_its_base_in_its_weights_only(tmp_path: Path) -> None:
    """config.json as the base's (no training settings such as use_cache: false) but for the weights' dtype, and
    the base's generation_config.json carried along."""
    import json

    from cpt_scaling.train.checkpoints import write_model

    config = tf.LlamaConfig(**SMALL, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)
    base = tf.LlamaForCausalLM(config)
    base.generation_config = tf.GenerationConfig(bos_token_id=1, eos_token_id=2, temperature=0.6, top_p=0.9,
                                                 do_sample=True)
    base.save_pretrained(str(tmp_path / "base"))
    model = load_model(tmp_path / "base", dtype=torch.float32)
    write_model(model, tmp_path / "ckpt")
    ours = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    theirs = json.loads((tmp_path / "base" / "config.json").read_text())
    stated = {"dtype", "torch_dtype", "transformers_version"}  # the weights' dtype; the writing library's version
    assert {k: v for k, v in ours.items() if k not in stated} == {k: v for k, v in theirs.items() if k not in stated}
    generation = json.loads((tmp_path / "ckpt" / "generation_config.json").read_text())
    assert generation["temperature"] == 0.6 and generation["top_p"] == 0.9 and generation["do_sample"] is True
