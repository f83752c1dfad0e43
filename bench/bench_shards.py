"""Throughput of ``build_shards`` (tokenize + pack) against the raw fast tokenizer's batch encode on the same texts.

The pool is ``--copies`` copies of the demo pool, each copy's texts made unique by a prefix (so deduplication
keeps them all), written as one JSONL.gz with a classified file labelling every document ``legal`` with score 1
and no held-out split: ``build_shards`` then reads, hashes, deduplicates, tokenizes and packs every document and
writes the Parquet shards. The reference holds the texts in memory and calls the tokenizer backend's
``encode_batch`` once on all of them (no special tokens), the work tokenization itself must do; a second reference
uses ``encode_batch_fast`` (no offsets), the call the stage makes. Tokens per second count document tokens (EOS
excluded) on both sides; the two alternate, best of ``--repeats`` each.

    .venv/bin/python bench/bench_shards.py --copies 16 --repeats 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from timing import timed

from cpt_scaling.data.classify import CLASSIFIED_SCHEMA
from cpt_scaling.data.docs_io import read_documents
from cpt_scaling.data.shards import build_shards
from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def make_pool(tmp: Path, copies: int) -> list[str]:
    """Write the pool (JSONL.gz) and its classified file (all ``legal``, score 1); return the texts."""
    base: list[str] = []
    for pool in sorted((DEMO / "pool").glob("pool-*.jsonl.gz")):
        base += read_documents(pool).column("text").to_pylist()
    texts = [text if c == 0 else f"[{c}] {text}" for c in range(copies) for text in base]
    ids = [f"doc-{i}" for i in range(len(texts))]
    with gzip.open(tmp / "pool.jsonl.gz", "wt", encoding="utf-8") as fh:
        for doc_id, text in zip(ids, texts, strict=True):
            fh.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    n = len(texts)
    labels = pa.table(
        [pa.array(ids), pa.array(["legal"] * n), pa.array([1.0] * n, pa.float32()),
         pa.array([len(t) for t in texts], pa.int32())],
        schema=CLASSIFIED_SCHEMA,
    )
    pq.write_table(labels, tmp / "labels.parquet")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=16, help="copies of the 1,060-document demo pool")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seeds = sorted((DEMO / "seeds").glob("*.jsonl.gz"))
        train_tokenizer(seeds, tmp / "tok", vocab_size=args.vocab_size)
        texts = make_pool(tmp, args.copies)
        backend = load_tokenizer(tmp / "tok").backend_tokenizer
        backend.no_truncation()
        backend.no_padding()
        n_tokens = sum(len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False))

        def stage() -> None:
            build_shards(
                tmp / "shards", pool_files=[tmp / "pool.jsonl.gz"], classified_files=[tmp / "labels.parquet"],
                domain="legal", threshold=0.5, tokenizer_path=tmp / "tok", seq_len=args.seq_len,
                heldout_fraction=0.0, heldout_max_sequences=0, shard_max_sequences=4096,
            )

        paths = {
            "encode_batch": lambda: backend.encode_batch(texts, add_special_tokens=False),
            "encode_batch_fast": lambda: backend.encode_batch_fast(texts, add_special_tokens=False),
            "build_shards": stage,
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, fn in paths.items():
                times[name].append(timed(fn))
        documents = pq.read_table(tmp / "shards" / "documents.parquet")
        assert documents.num_rows == len(texts), "every document must be tokenized"
        assert sum(documents.column("n_tokens").to_pylist()) - len(texts) == n_tokens
    best = {name: min(ts) for name, ts in times.items()}
    print(f"documents: {len(texts)} ({sum(map(len, texts)) / 1e6:.1f} M characters), {n_tokens} tokens, "
          f"vocab {args.vocab_size}, seq_len {args.seq_len}")
    for name, ts in times.items():
        spread = " / ".join(f"{n_tokens / t / 1e6:.2f}" for t in ts)
        print(f"{name:18s} {n_tokens / best[name] / 1e6:6.2f} M tokens/s  (all: {spread})")
    print(f"ratio build_shards / encode_batch:      {best['encode_batch'] / best['build_shards']:.3f} (target >= 0.8)")
    print(f"ratio build_shards / encode_batch_fast: {best['encode_batch_fast'] / best['build_shards']:.3f}")


if __name__ == "__main__":
    main()
