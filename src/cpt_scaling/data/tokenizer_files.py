"""The files of a Hugging Face tokenizer directory, by name, and copying them as they are (no heavy imports: the
trainer copies them into every exported checkpoint)."""

from __future__ import annotations

import shutil
from pathlib import Path

#: Name prefixes of the files that make up a Hugging Face tokenizer directory.
TOKENIZER_FILES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "chat_template")


def is_tokenizer_file(path: Path) -> bool:
    """Whether ``path`` is one of a Hugging Face tokenizer directory's files (by name)."""
    return path.is_file() and path.name.startswith(TOKENIZER_FILES)


def copy_tokenizer(src: Path, dest: Path) -> None:
    """Copy a local tokenizer's files byte for byte into the existing directory ``dest`` (``save_pretrained``
    would rewrite ``tokenizer_config.json`` with loading options such as ``local_files_only``)."""
    for path in sorted(Path(src).iterdir()):
        if is_tokenizer_file(path):
            shutil.copyfile(path, Path(dest) / path.name)
