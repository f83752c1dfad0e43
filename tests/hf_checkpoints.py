"""Tiny local Hugging Face checkpoints and a tokenizer, built with transformers/tokenizers as a user's download
would look: Qwen2 architecture (grouped-query attention, tied embeddings, q/k/v biases), a byte-level BPE of
1,500 tokens whose EOS ``<|endoftext|>`` is not token 0 and whose embedding rows are padded to 1,536."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

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
                         tie_word_embeddings=True, max_position_embeddings=256, eos_token_id=eos_id,
                         bos_token_id=None)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(str(out_dir))
    return model


def make_hf_sweep_inputs(root: Path, seed_files: list[Path]) -> dict[str, Path]:
    """Tokenizer at ``root/tokenizer`` and one checkpoint per size at ``root/<size>``; returns the paths."""
    tokenizer = make_tokenizer(root / "tokenizer", seed_files)
    paths = {"tokenizer": root / "tokenizer"}
    for i, size in enumerate(SIZES):
        make_checkpoint(root / size, size, tokenizer.eos_token_id, seed=i)
        paths[size] = root / size
    return paths
