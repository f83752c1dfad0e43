"""Where a sweep's tokenizer comes from: trained locally on the seed texts, or a local Hugging Face tokenizer."""

from __future__ import annotations

from pathlib import Path

from cpt_scaling.core.atomic import atomic_dir
from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer
from cpt_scaling.data.tokenizer_files import copy_tokenizer


def install_tokenizer(out_dir: Path, *, files: list[Path], vocab_size: int, path: str | None,
                      text_column: str = "text", id_column: str = "id") -> None:
    """Write a tokenizer to ``out_dir``: a copy of the local one at ``path``, else a BPE trained on ``files``."""
    if path:
        load_tokenizer(Path(path))  # it must load (a fast tokenizer); its files are then copied as they are
        with atomic_dir(out_dir) as tmp:
            copy_tokenizer(Path(path), tmp)
    else:
        train_tokenizer(files, out_dir, vocab_size=vocab_size, text_column=text_column, id_column=id_column)
