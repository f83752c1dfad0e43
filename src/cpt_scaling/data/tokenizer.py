"""Train a byte-level BPE tokenizer on raw documents, and load any local Hugging Face fast tokenizer."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cpt_scaling.core.atomic import atomic_dir
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.progress import LogProgress
from cpt_scaling.data.docs_io import count_all_documents, iter_document_batches

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"


def _iter_texts(files: list[Path], text_column: str, id_column: str) -> Iterator[str]:
    """Yield every document text of ``files`` in order, logging progress."""
    with LogProgress(log, "tokenizer training", total=count_all_documents([Path(f) for f in files])) as progress:
        for path in files:
            for batch in iter_document_batches(Path(path), text_column=text_column, id_column=id_column):
                yield from batch.column("text").to_pylist()
                progress.update(batch.num_rows)


def train_tokenizer(
    files: list[Path],
    out_dir: Path,
    *,
    vocab_size: int,
    text_column: str = "text",
    id_column: str = "id",
    seed: int = 0,
) -> None:
    """Train a byte-level BPE tokenizer on the texts of ``files`` and save it as a HF fast tokenizer.

    ``<|endoftext|>`` is token 0 and serves as EOS, BOS, UNK and pad; no special tokens are added on encode.
    BPE training is deterministic for the same input (``seed`` is accepted for a uniform interface and is
    recorded in ``training_args.json``; the algorithm draws no random numbers).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not files:
        raise InputError("tokenizer files", "no training files given")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        minimum = len(alphabet) + 1
        raise InputError("vocab_size", f"{vocab_size} is below the byte alphabet plus EOS ({minimum})")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(_iter_texts(files, text_column, id_column), trainer=trainer)
    if tok.token_to_id(EOS_TOKEN) != 0:
        raise RuntimeError(f"{EOS_TOKEN} did not get id 0")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
    )
    special = {name: EOS_TOKEN for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    args = {
        "model": "byte-level BPE",
        "vocab_size": vocab_size,
        "seed": seed,
        "files": [str(p) for p in files],
    }
    with atomic_dir(out_dir) as tmp:
        fast.save_pretrained(str(tmp))
        # The generic class name keeps the directory loadable by transformers 4.x as well as 5.x.
        config = json.loads((tmp / "tokenizer_config.json").read_text())
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        _write_json(tmp / "tokenizer_config.json", config)
        _write_json(tmp / "special_tokens_map.json", special)
        _write_json(tmp / "training_args.json", args)
    log.info("trained tokenizer with %d tokens into %s", tok.get_vocab_size(), out_dir)


# End-of-turn tokens of chat templates, and the end-of-document tokens a base tokenizer keeps beside them.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
END_OF_DOCUMENT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")


def document_separator(tok: PreTrainedTokenizerFast, where: str) -> int:
    """Id of the token that ends each document in packed sequences: the tokenizer's EOS, unless that is a chat
    end-of-turn token (an instruct tokenizer's ``<|im_end|>``) while an end-of-document token exists; that
    mismatch is logged as a warning naming both, and the end-of-document token is used."""
    eos = tok.eos_token
    if eos is None or tok.eos_token_id is None:
        raise InputError(where, "tokenizer has no EOS token to end documents with")
    if eos in END_OF_TURN:
        vocab = tok.get_vocab()
        for name in END_OF_DOCUMENT:
            if name in vocab:
                log.warning("%s: eos_token is the chat end-of-turn token %s while the end-of-document token %s "
                            "exists; documents are joined with %s (an instruct tokenizer for continued "
                            "pretraining?)", where, eos, name, name)
                return int(vocab[name])
    return int(tok.eos_token_id)


def document_prefix(tok: PreTrainedTokenizerFast) -> list[int]:
    """The special tokens the tokenizer puts before a text when it adds its own (Llama's ``<s>``, Llama 3's
    ``<|begin_of_text|>``); empty for tokenizers that add none (Qwen2, GPT-2, this project's BPE). Documents are
    packed as ``prefix + text + end-of-document``, the format the base model was pretrained on."""
    bare = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a", add_special_tokens=True)["input_ids"]
    special = set(tok.all_special_ids)
    prefix: list[int] = []
    for token in full[: max(0, len(full) - len(bare))]:
        if token not in special:
            break
        prefix.append(int(token))
    return prefix


def _write_json(path: Path, obj: object) -> None:
    """Write indented, key-sorted JSON (inside an atomic directory, so no per-file atomicity needed)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """Load a local fast tokenizer directory (this module's or any Hugging Face one).

    Raises ``InputError`` when ``path`` is missing or holds no loadable fast tokenizer.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if not path.is_dir():
        raise InputError(str(path), "tokenizer directory not found")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises many types (OSError, ValueError, KeyError...) here
        raise InputError(str(path), f"not a tokenizer directory: {exc}") from None
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise InputError(str(path), f"not a fast (tokenizers-backed) tokenizer: {type(tok).__name__}")
    return tok
