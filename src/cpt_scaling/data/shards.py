"""Select one domain's documents from a classified pool, split held-out docs, tokenize, pack, write Parquet.

Output directory layout (written atomically):

- ``train-00000.parquet``, ... : column ``input_ids`` (list<int32>, every row ``seq_len`` long), at most
  ``shard_max_sequences`` rows each;
- ``train.u32``, ``validation.u32``, ``heldout.u32``: the same sequences of each split as one uncompressed
  little-endian uint32 array of ``n_sequences × seq_len`` ids (no header; shape and max id are in the manifest),
  the token store training memory-maps (:func:`cpt_scaling.data.sequences.read_train_sequences`);
- ``heldout.parquet``: same column, at most ``heldout_max_sequences`` rows;
- ``documents.parquet``: one row per kept (selected, deduplicated) document: ``doc_id``, ``doc_hash``,
  ``split`` (train/validation/heldout) and ``n_tokens`` (with EOS; null for held-out documents past the cap, which are
  not tokenized): the audit trail that shows held-out documents never reach training;
- ``manifest.json``: counts, files and the held-out document hashes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cpt_scaling.core.atomic import atomic_dir, write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.progress import LogProgress
from cpt_scaling.data import POOL
from cpt_scaling.data.docs_io import count_all_documents, doc_hash, hash_fraction, iter_document_batches
from cpt_scaling.data.prefetch import prefetch
from cpt_scaling.data.tokenizer import document_prefix, document_separator, load_tokenizer

log = logging.getLogger(__name__)

HELDOUT_SUITES = ("validation", "heldout")
ROW_GROUP_SEQUENCES = 1024
TOKEN_DTYPE = "<u4"  # the token store's element type: little-endian uint32
TOKEN_SUFFIX = ".u32"
DOCS_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("doc_hash", pa.string()), ("split", pa.string()), ("n_tokens", pa.int64())]
)


def sequences_table(flat: np.ndarray, seq_len: int) -> pa.Table:
    """Wrap a flat token array (length a multiple of ``seq_len``) as a list<int32> ``input_ids`` table.

    A plain list (not a fixed-size list) keeps the files readable by every list-based reader; ``seq_len`` is
    also stored in the schema metadata so an empty file still knows its width.
    """
    values = pa.array(np.ascontiguousarray(flat, dtype=np.int32))
    offsets = pa.array(np.arange(0, len(flat) + 1, seq_len, dtype=np.int32))
    table = pa.table({"input_ids": pa.ListArray.from_arrays(offsets, values)})
    return table.replace_schema_metadata({"seq_len": str(seq_len)})


def write_sequences(path: Path, flat: np.ndarray, seq_len: int) -> None:
    """Write a flat token array as a Parquet file of ``seq_len`` sequences (zstd)."""
    pq.write_table(
        sequences_table(flat, seq_len), path, compression="zstd", row_group_size=ROW_GROUP_SEQUENCES
    )


class TokenFileWriter:
    """Appends whole ``seq_len`` sequences to a raw uint32 token file; tracks the row count and the max id."""

    def __init__(self, path: Path, seq_len: int) -> None:
        self.path = Path(path)
        self.seq_len = seq_len
        self.n_sequences = 0
        self.max_token_id: int | None = None
        self._file = self.path.open("wb")

    def add(self, flat: np.ndarray) -> None:
        """Append tokens (a whole number of sequences; ids must be non-negative and below 2**32)."""
        if len(flat) % self.seq_len:
            raise ValueError(f"{len(flat)} tokens are not a whole number of {self.seq_len}-token sequences")
        if len(flat) == 0:
            return
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= 2**32:
            raise ValueError(f"token ids must lie in [0, 2**32), got [{low}, {high}]")
        np.ascontiguousarray(flat, dtype=TOKEN_DTYPE).tofile(self._file)
        self.n_sequences += len(flat) // self.seq_len
        self.max_token_id = high if self.max_token_id is None else max(self.max_token_id, high)

    def close(self) -> dict[str, Any]:
        """Close the file; return its manifest entry: ``token_file``, ``n_sequences``, ``max_token_id``."""
        self._file.close()
        return {"token_file": self.path.name, "n_sequences": self.n_sequences, "max_token_id": self.max_token_id}


def write_token_file(path: Path, rows: np.ndarray) -> dict[str, Any]:
    """Write an ``(n, seq_len)`` array of token ids as a token file; return its manifest entry."""
    writer = TokenFileWriter(path, rows.shape[1])
    writer.add(rows.reshape(-1))
    return writer.close()


class _TrainWriter:
    """Packs a token stream into ``seq_len`` sequences and writes shards of ``shard_max_sequences`` rows.

    Every shard also goes to the split's token file ``train.u32`` (in shard order).
    """

    def __init__(self, out_dir: Path, seq_len: int, shard_max_sequences: int) -> None:
        self.out_dir = out_dir
        self.seq_len = seq_len
        self.shard_tokens = seq_len * shard_max_sequences
        self.chunks: list[np.ndarray] = []
        self.n_buffered = 0
        self.shards: list[dict[str, Any]] = []
        self.tokens = TokenFileWriter(out_dir / f"train{TOKEN_SUFFIX}", seq_len)

    def add(self, tokens: np.ndarray) -> None:
        """Append tokens; write every full shard."""
        self.chunks.append(tokens)
        self.n_buffered += len(tokens)
        while self.n_buffered >= self.shard_tokens:
            flat = np.concatenate(self.chunks)
            self._write(flat[: self.shard_tokens])
            rest = flat[self.shard_tokens :]
            self.chunks = [rest]
            self.n_buffered = len(rest)

    def finish(self) -> None:
        """Write the last (partial) shard of whole sequences; the remainder below ``seq_len`` is dropped."""
        n_keep = (self.n_buffered // self.seq_len) * self.seq_len
        if n_keep:
            self._write(np.concatenate(self.chunks)[:n_keep])
        self.chunks, self.n_buffered = [], 0

    def _write(self, flat: np.ndarray) -> None:
        name = f"train-{len(self.shards):05d}.parquet"
        write_sequences(self.out_dir / name, flat, self.seq_len)
        self.tokens.add(flat)
        n_seq = len(flat) // self.seq_len
        self.shards.append({"file": name, "n_sequences": n_seq, "n_tokens": n_seq * self.seq_len})
        log.info("wrote %s (%d sequences)", name, n_seq)


def _pack_documents(id_lists: list[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate token arrays with EOS after each document; also return each document's length (with EOS)."""
    lengths = np.fromiter((len(ids) + 1 for ids in id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.empty(int(lengths.sum()), dtype=np.int32)
    ends = np.cumsum(lengths)
    flat[ends - 1] = eos_id
    for ids, end, n in zip(id_lists, ends, lengths, strict=True):
        flat[end - n : end - 1] = ids
    return flat, lengths


def _read_classified(path: Path) -> pa.Table:
    """Read a ``classify_file`` output, checking its columns."""
    where = str(path)
    if not path.is_file():
        raise InputError(where, "classified file not found")
    try:
        table = pq.read_table(path, columns=["doc_id", "domain", "score"])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise InputError(where, f"not a classified Parquet file with doc_id, domain, score: {exc}") from None
    return table


def build_shards(
    out_dir: Path,
    *,
    pool_files: list[Path],
    classified_files: list[Path],
    domain: str,
    threshold: float,
    tokenizer_path: Path,
    seq_len: int,
    heldout_fraction: float,
    heldout_max_sequences: int,
    shard_max_sequences: int,
    text_column: str = "text",
    id_column: str = "id",
) -> dict[str, Any]:
    """Build the packed training shards and the held-out suite of ``domain``; return the manifest.

    ``pool_files[i]`` pairs row by row with ``classified_files[i]``. Documents with that domain and
    ``score >= threshold`` are kept (all of them for ``domain`` = :data:`POOL`); exact duplicates (same
    ``doc_hash``) after the first are dropped. A document is held out when ``hash_fraction(doc_hash) <
    heldout_fraction``, decided before packing. Each document is packed as the tokenizer's own prefix (``<s>``
    where it adds one: :func:`document_prefix`), its tokens and EOS; the stream is cut into ``seq_len``
    sequences, remainder dropped.
    """
    pool_files = [Path(p) for p in pool_files]
    classified_files = [Path(p) for p in classified_files]
    where_cls = ", ".join(str(p) for p in classified_files) or "classified_files"
    _check_inputs(pool_files, classified_files, where_cls, seq_len=seq_len, shard_max_sequences=shard_max_sequences,
                  heldout_fraction=heldout_fraction, heldout_max_sequences=heldout_max_sequences)
    tok = load_tokenizer(Path(tokenizer_path))
    eos_id = document_separator(tok, str(tokenizer_path))
    prefix = document_prefix(tok)
    backend = tok.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()

    with atomic_dir(out_dir) as tmp:
        build = _ShardBuild(tmp, backend, eos_id, prefix, domain=domain, threshold=threshold, seq_len=seq_len,
                            heldout_fraction=heldout_fraction, heldout_max_sequences=heldout_max_sequences,
                            shard_max_sequences=shard_max_sequences)
        with LogProgress(log, f"{domain} shards", total=count_all_documents(list(classified_files))) as progress:
            for pool_file, cls_file in zip(pool_files, classified_files, strict=True):
                build.scan(pool_file, cls_file, progress, text_column=text_column, id_column=id_column)
        if build.n_selected == 0:
            raise InputError(where_cls, f"no documents of domain {domain!r} with score >= {threshold}")
        train_tokens = build.finish_train(where_cls)
        suite_tokens = build.write_suites(tmp, where_cls)
        pq.write_table(pa.table(build.doc_rows, schema=DOCS_SCHEMA), tmp / "documents.parquet", compression="zstd")
        manifest = build.manifest(len(tok), train_tokens, suite_tokens)
        write_json(tmp / "manifest.json", manifest)
    log.info(
        "%s: %d train sequences in %d shards, %d held-out sequences, %d duplicates removed",
        domain,
        manifest["train"]["n_sequences"],
        len(build.train.shards),
        manifest["heldout"]["n_sequences"],
        build.n_duplicates,
    )
    return manifest


def _check_inputs(
    pool_files: list[Path], classified_files: list[Path], where_cls: str, *, seq_len: int,
    shard_max_sequences: int, heldout_fraction: float, heldout_max_sequences: int,
) -> None:
    """Reject unpaired or missing input files and out-of-range sizes before anything is read."""
    if len(pool_files) != len(classified_files):
        problem = f"{len(pool_files)} pool files but {len(classified_files)} classified files"
        raise InputError(where_cls, problem)
    if not pool_files:
        raise InputError("pool_files", "no pool files given")
    for name, value in (("seq_len", seq_len), ("shard_max_sequences", shard_max_sequences)):
        if value < 1:
            raise InputError(name, f"must be at least 1, got {value}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise InputError("heldout_fraction", f"must be in [0, 1), got {heldout_fraction}")
    if heldout_max_sequences < 0:
        raise InputError("heldout_max_sequences", f"must be at least 0, got {heldout_max_sequences}")


_Doc = tuple[str, str, str]  # (doc_id, doc_hash, text)


class _ShardBuild:
    """One domain's build in progress: selects, deduplicates, splits off held-out documents and packs the rest.

    Keeps the counts, the hashes seen, the held-out token buffers, the audit rows and the train shard writer.
    """

    def __init__(
        self, tmp: Path, backend: Any, eos_id: int, prefix: list[int], *, domain: str, threshold: float, seq_len: int,
        heldout_fraction: float, heldout_max_sequences: int, shard_max_sequences: int,
    ) -> None:
        self.backend, self.eos_id, self.prefix = backend, eos_id, prefix
        self.domain, self.threshold, self.seq_len = domain, threshold, seq_len
        self.heldout_fraction, self.heldout_max_sequences = heldout_fraction, heldout_max_sequences
        self.heldout_hashes: list[str] = []
        # Held-out documents are split again by hash: the lower half of the held-out hash range is the validation
        # suite (checkpoint selection), the upper half the test suite that results report.
        self.suites: dict[str, dict[str, Any]] = {kind: {"chunks": [], "buffered": 0} for kind in HELDOUT_SUITES}
        self.heldout_target = heldout_max_sequences * seq_len
        self.doc_rows: dict[str, list[Any]] = {name: [] for name in DOCS_SCHEMA.names}
        self.seen: set[bytes] = set()
        self.n_duplicates = self.n_selected = self.n_train_docs = self.n_seen = self.n_train_tokens = 0
        self.train = _TrainWriter(tmp, seq_len, shard_max_sequences)

    def scan(self, pool_file: Path, cls_file: Path, progress: LogProgress, *, text_column: str, id_column: str
             ) -> None:
        """Select, deduplicate, split and pack the documents of one pool file and its classified file (counted
        in ``progress``)."""
        classified = _read_classified(cls_file)
        offset = 0
        batches = iter_document_batches(pool_file, text_column=text_column, id_column=id_column)
        for batch in prefetch(batches):  # read the next batch while this one is tokenized
            chosen = _select(batch, classified.slice(offset, batch.num_rows), self.domain, self.threshold)
            if chosen is None:
                problem = f"rows do not match pool file {pool_file} (rerun classification for it)"
                raise InputError(str(cls_file), problem)
            offset += batch.num_rows
            self.n_seen += batch.num_rows
            train_docs, held_docs = self._split_heldout(self._dedup(chosen))
            self._pack_train(train_docs)
            self._pack_heldout(held_docs)
            progress.update(batch.num_rows, selected=self.n_selected, train_tokens=self.n_train_tokens)
        if offset != classified.num_rows:
            problem = f"has {classified.num_rows} rows but pool file {pool_file} has {offset} documents"
            raise InputError(str(cls_file), problem)

    def _dedup(self, chosen: pa.RecordBatch) -> list[_Doc]:
        """The selected documents whose text was not seen before (counts the selected and the duplicates)."""
        docs: list[_Doc] = []
        for doc_id, text in zip(chosen.column("doc_id").to_pylist(), chosen.column("text").to_pylist(), strict=True):
            self.n_selected += 1
            digest = doc_hash(text)
            key = bytes.fromhex(digest)
            if key in self.seen:
                self.n_duplicates += 1
                continue
            self.seen.add(key)
            docs.append((doc_id, digest, text))
        return docs

    def _split_heldout(self, docs: list[_Doc]) -> tuple[list[_Doc], dict[str, list[_Doc]]]:
        """Split documents by hash into training documents and the two held-out suites."""
        train_docs: list[_Doc] = []
        held_docs: dict[str, list[_Doc]] = {kind: [] for kind in HELDOUT_SUITES}
        for doc in docs:
            fraction = hash_fraction(doc[1])
            if fraction < self.heldout_fraction:
                kind = "validation" if fraction < self.heldout_fraction / 2 else "heldout"
                held_docs[kind].append(doc)
            else:
                train_docs.append(doc)
        return train_docs, held_docs

    def _pack_train(self, docs: list[_Doc]) -> None:
        """Tokenize training documents into the shard writer and record their audit rows."""
        if not docs:
            return
        flat, lengths = _encode_docs(self.backend, docs, self.eos_id, self.prefix)
        self.train.add(flat)
        self.n_train_tokens += len(flat)
        _add_doc_rows(self.doc_rows, docs, "train", lengths.tolist())
        self.n_train_docs += len(docs)

    def _pack_heldout(self, held_docs: dict[str, list[_Doc]]) -> None:
        """Buffer held-out tokens per suite up to the cap; past it, record the documents without tokenizing."""
        for kind, docs in held_docs.items():
            if not docs:
                continue
            self.heldout_hashes.extend(digest for _, digest, _ in docs)
            suite = self.suites[kind]
            if suite["buffered"] < self.heldout_target:
                flat, lengths = _encode_docs(self.backend, docs, self.eos_id, self.prefix)
                suite["chunks"].append(flat)
                suite["buffered"] += len(flat)
                _add_doc_rows(self.doc_rows, docs, kind, lengths.tolist())
            else:  # enough held-out tokens already: record the documents, skip tokenizing them
                _add_doc_rows(self.doc_rows, docs, kind, [None] * len(docs))

    def finish_train(self, where: str) -> dict[str, Any]:
        """Write the last train shard, close ``train.u32``; return its entry. At least one sequence is required."""
        self.train.finish()
        train_tokens = self.train.tokens.close()
        if not self.train.shards:
            problem = f"domain {self.domain!r}: too few tokens for one training sequence of {self.seq_len} tokens"
            raise InputError(where, problem)
        return train_tokens

    def write_suites(self, tmp: Path, where: str) -> dict[str, dict[str, Any]]:
        """Write each held-out suite (at most ``heldout_max_sequences``) as Parquet and token file; their entries."""
        seq_len = self.seq_len
        suite_tokens: dict[str, dict[str, Any]] = {}
        for kind, suite in self.suites.items():
            flat = np.concatenate(suite["chunks"]) if suite["chunks"] else np.empty(0, np.int32)
            n_seq = min(self.heldout_max_sequences, len(flat) // seq_len)
            if n_seq == 0 and self.heldout_fraction > 0 and self.heldout_max_sequences > 0:
                problem = (
                    f"domain {self.domain!r}: held-out {kind} documents give fewer than {seq_len} tokens, so that "
                    "suite would be empty; raise heldout_fraction"
                )
                raise InputError(where, problem)
            kept = flat[: n_seq * seq_len]
            write_sequences(tmp / f"{kind}.parquet", kept, seq_len)
            suite_tokens[kind] = write_token_file(tmp / f"{kind}{TOKEN_SUFFIX}", kept.reshape(n_seq, seq_len))
        return suite_tokens

    def manifest(
        self, vocab_size: int, train_tokens: dict[str, Any], suite_tokens: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """The build's ``manifest.json``: counts, files, token files and the held-out document hashes."""
        seq_len = self.seq_len
        n_train_seq = sum(s["n_sequences"] for s in self.train.shards)
        held, val = suite_tokens["heldout"], suite_tokens["validation"]
        return {
            "domain": self.domain,
            "threshold": self.threshold,
            "seq_len": seq_len,
            "vocab_size": vocab_size,
            "eos_token_id": self.eos_id,
            "document_prefix_ids": self.prefix,
            "token_dtype": "uint32",
            "n_scanned": self.n_seen,
            "n_selected": self.n_selected,
            "n_duplicates_removed": self.n_duplicates,
            "train": {
                "n_docs": self.n_train_docs,
                "n_tokens": n_train_seq * seq_len,
                "n_sequences": n_train_seq,
                "shards": self.train.shards,
                "token_file": train_tokens["token_file"],
                "max_token_id": train_tokens["max_token_id"],
            },
            "heldout": {
                "n_docs": len(self.heldout_hashes),
                "n_tokens": held["n_sequences"] * seq_len,
                "n_sequences": held["n_sequences"],
                "file": "heldout.parquet",
                "token_file": held["token_file"],
                "max_token_id": held["max_token_id"],
            },
            "validation": {
                "n_tokens": val["n_sequences"] * seq_len,
                "n_sequences": val["n_sequences"],
                "file": "validation.parquet",
                "token_file": val["token_file"],
                "max_token_id": val["max_token_id"],
            },
            "heldout_doc_hashes": sorted(self.heldout_hashes),
            "documents": "documents.parquet",
        }


def _select(batch: pa.RecordBatch, labels: pa.Table, domain: str, threshold: float) -> pa.RecordBatch | None:
    """Rows of ``batch`` labelled ``domain`` with score >= ``threshold`` (every row for the unfiltered pool,
    :data:`POOL`); None if ``labels`` is misaligned."""
    if labels.num_rows != batch.num_rows or not labels.column("doc_id").combine_chunks().equals(
        batch.column("doc_id")
    ):
        return None
    if domain == POOL:
        return batch
    mask = pc.and_(
        pc.equal(labels.column("domain"), domain), pc.greater_equal(labels.column("score"), threshold)
    )
    return batch.filter(pc.fill_null(mask.combine_chunks(), False))


#: Characters per tokenizer call. The tokenizer's Encoding objects take about 0.6 kB per token (a 20 MB document
#: took 3.3 GB in one call), so documents are encoded in pieces of at most this many characters, a long document
#: cut just before a whitespace character (where byte-level BPE starts a new pre-token anyway, so its tokens are
#: those of the whole document), and each call's ids are kept as int32 arrays before the next call.
ENCODE_CHARS = 1 << 20


def _pieces(text: str, limit: int) -> list[str]:
    """``text`` in consecutive pieces of at most ``limit`` characters, each cut before its last whitespace."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > limit:
        cut = max(text.rfind(" ", start + 1, start + limit), text.rfind("\n", start + 1, start + limit))
        end = cut if cut > start else start + limit
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def _encode_docs(
    backend: Any, docs: list[tuple[str, str, str]], eos_id: int, prefix: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize ``docs`` ``(doc_id, hash, text)`` and pack them as ``prefix + tokens + EOS``; return the flat
    token stream and each document's length. Tokenizer calls take at most :data:`ENCODE_CHARS` characters."""
    parts: list[list[np.ndarray]] = [[np.asarray(prefix, dtype=np.int32)] for _ in docs]
    batch: list[tuple[int, str]] = []
    size = 0

    def encode() -> None:
        encodings = backend.encode_batch_fast([piece for _, piece in batch], add_special_tokens=False)
        for (doc, _), enc in zip(batch, encodings, strict=True):
            parts[doc].append(np.asarray(enc.ids, dtype=np.int32))

    for i, (_, _, text) in enumerate(docs):
        for piece in _pieces(text, ENCODE_CHARS):
            if batch and size + len(piece) > ENCODE_CHARS:
                encode()
                batch, size = [], 0
            batch.append((i, piece))
            size += len(piece)
    if batch:
        encode()
    return _pack_documents([np.concatenate(p) for p in parts], eos_id)


def _add_doc_rows(
    rows: dict[str, list[Any]], docs: list[tuple[str, str, str]], split: str, n_tokens: list[int | None]
) -> None:
    """Append documents' audit rows (``n_tokens`` includes EOS; None when the document was not tokenized)."""
    rows["doc_id"].extend(doc_id for doc_id, _, _ in docs)
    rows["doc_hash"].extend(digest for _, digest, _ in docs)
    rows["split"].extend([split] * len(docs))
    rows["n_tokens"].extend(n_tokens)
