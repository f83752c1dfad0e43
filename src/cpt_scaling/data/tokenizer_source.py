"""Where a sweep's tokenizer comes from: trained locally on the seed texts, or a local Hugging Face tokenizer."""

from __future__ import annotations

from pathlib import Path

from cpt_scaling.core.atomic import atomic_dir
from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer


def install_tokenizer(out_dir: Path, *, files: list[Path], vocab_size: int, path: str | None,
                      text_column: str = "text", id_column: str = "id") -> None:
    """Write a tokenizer to ``out_dir``: a copy of the local one at ``path``, else a BPE trained on ``files``."""
    if path:
        tokenizer = load_tokenizer(Path(path))
        with atomic_dir(out_dir) as tmp:
            tokenizer.save_pretrained(str(tmp))
    else:
        train_tokenizer(files, out_dir, vocab_size=vocab_size, text_column=text_column, id_column=id_column)
