"""Tiny local Hugging Face checkpoints, tokenizers and a corpus, built with transformers/tokenizers/pyarrow as a
user's download would look: Qwen2 architecture (grouped-query attention, tied embeddings, q/k/v biases) and Llama
(grouped-query attention, untied embeddings, 256 positions), byte-level BPEs of 1,500 tokens (Qwen-style: EOS
``<|endoftext|>`` not token 0, no BOS; Llama-style: ``<s> … </s>``) with embedding rows padded to 1,536, and a
pool of Parquet files in nested folders as FineWeb ships them (``data/<dump>/*.parquet``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 1500
EMBEDDING_ROWS = 1536
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # Qwen's order: after the BPE merges
SIZES = {  # name -> (hidden, layers, heads, kv heads, MLP width)
    "m1": (32, 2, 4, 2, 64),
    "m2": (64, 2, 4, 2, 128),
}


def _texts(seed_files: list[Path]) -> list[str]:
    texts = []
    for path in seed_files:
        with gzip.open(path, "rt") as fh:
            texts += [json.loads(line)["text"] for line in fh]
    return texts


def make_tokenizer(out_dir: Path, seed_files: list[Path]) -> PreTrainedTokenizerFast:
    """A byte-level BPE with ``VOCAB`` ids: merges first, then Qwen-style special tokens (EOS id 1497)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIAL), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_texts(seed_files), trainer=trainer)
    tok.add_special_tokens(SPECIAL)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(str(out_dir))
    return fast


def make_llama_tokenizer(out_dir: Path, seed_files: list[Path]) -> PreTrainedTokenizerFast:
    """A Llama-family byte-level BPE: ``<s>`` (id 1) put before every text by its post-processor, ``</s>`` (id 2)
    as EOS, ``<unk>`` id 0, as Llama 2 and its descendants ship it (``add_bos_token``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_texts(seed_files), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(out_dir))
    return fast


def make_checkpoint(out_dir: Path, size: str, eos_id: int, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 model of ``SIZES[size]`` saved with ``save_pretrained`` (safetensors)."""
    hidden, layers, heads, kv_heads, ff = SIZES[size]
    config = Qwen2Config(vocab_size=EMBEDDING_ROWS, hidden_size=hidden, intermediate_size=ff,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         tie_word_embeddings=True, max_position_embeddings=1024, eos_token_id=eos_id,
                         bos_token_id=None)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(str(out_dir))
    return model


def make_llama_checkpoint(out_dir: Path, size: str, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised Llama model of ``SIZES[size]`` (untied embeddings, 256 positions, ``<s>`` = 1 and
    ``</s>`` = 2 as :func:`make_llama_tokenizer`'s) with a sampling generation config, saved with
    ``save_pretrained``."""
    hidden, layers, heads, kv_heads, ff = SIZES[size]
    config = LlamaConfig(vocab_size=EMBEDDING_ROWS, hidden_size=hidden, intermediate_size=ff,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         tie_word_embeddings=False, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, do_sample=True, temperature=0.6)
    model.save_pretrained(str(out_dir))
    return model


def make_nested_parquet_pool(out_dir: Path, pool_files: list[Path]) -> list[Path]:
    """The pool's JSON-lines files as FineWeb-style Parquet (``text``, ``id``, ``dump`` columns), one folder per
    dump: ``<out_dir>/data/CC-MAIN-2024-<nn>/000_00000.parquet``; returns the files written."""
    written = []
    for i, path in enumerate(pool_files):
        with gzip.open(path, "rt") as fh:
            rows = [json.loads(line) for line in fh]
        dump = f"CC-MAIN-2024-{10 + i:02d}"
        table = pa.table({"text": [r["text"] for r in rows], "id": [str(r["id"]) for r in rows],
                          "dump": [dump] * len(rows)})
        out = out_dir / "data" / dump / "000_00000.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
        written.append(out)
    return written


def make_hf_sweep_inputs(root: Path, seed_files: list[Path], pool_files: list[Path]) -> dict[str, Path]:
    """The HF-checkpoint sweep's inputs under ``root``: a Llama-family tokenizer (``tokenizer``), a Qwen2
    checkpoint with tied embeddings (``m1``) and a Llama one (``m2``), and ``pool_files`` as nested Parquet
    (``fineweb``); returns the paths."""
    make_llama_tokenizer(root / "tokenizer", seed_files)
    make_checkpoint(root / "m1", "m1", eos_id=2, seed=0)
    make_llama_checkpoint(root / "m2", "m2", seed=1)
    make_nested_parquet_pool(root / "fineweb", pool_files)
    return {name: root / name for name in ("tokenizer", "m1", "m2", "fineweb")}
