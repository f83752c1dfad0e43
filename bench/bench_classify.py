"""Throughput of ``classify_file`` against a bare ``model.predict`` loop on the same texts.

``classify_file`` reads a JSONL.gz pool, preprocesses, predicts in batches and writes zstd Parquet. The
baseline only calls ``model.predict(lines, k=1)`` on the already preprocessed lines held in memory (the work
fastText itself must do), so the ratio is the cost of everything around the model. A second baseline
includes ``preprocess`` in the loop, for reference.

    .venv/bin/python bench/bench_classify.py --copies 8 --repeats 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from cpt_scaling.classify import classify_file, load_classifier, preprocess_array, train_classifier
from cpt_scaling.docs_io import read_documents

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
DOMAINS = ["accounting", "general", "legal", "medical"]


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of ``repeats`` calls (the least disturbed by other load on a shared machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_pool(path: Path, copies: int) -> list[str]:
    """Write ``copies`` copies of the demo pool (fresh ids) as one JSONL.gz; return the texts."""
    texts = []
    for pool in sorted((DEMO / "pool").glob("pool-*.jsonl.gz")):
        texts += read_documents(pool).column("text").to_pylist()
    texts = texts * copies
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=8, help="copies of the 1,060-document demo pool")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        seeds = {d: [DEMO / "seeds" / f"{d}.jsonl.gz"] for d in DOMAINS}
        train_classifier(
            seeds,
            tmp / "cls",
            epoch=20,
            lr=0.5,
            word_ngrams=2,
            dim=32,
            min_count=1,
            validation_fraction=0.25,
            seed=0,
        )
        model_path = tmp / "cls" / "model.bin"
        texts = make_pool(tmp / "pool.jsonl.gz", args.copies)
        n = len(texts)
        model = load_classifier(model_path)
        lines = preprocess_array(pa.array(texts, pa.string())).to_pylist()
        bs = args.batch_size

        def raw_predict() -> None:
            for i in range(0, n, bs):
                model.predict(lines[i : i + bs], k=1)

        def raw_with_preprocess() -> None:
            for i in range(0, n, bs):
                model.predict(preprocess_array(pa.array(texts[i : i + bs], pa.string())).to_pylist(), k=1)

        def pipeline() -> None:
            classify_file(model_path, tmp / "pool.jsonl.gz", tmp / "out.parquet", batch_size=bs)

        t_raw = best_of(args.repeats, raw_predict)
        t_raw_pre = best_of(args.repeats, raw_with_preprocess)
        t_pipe = best_of(args.repeats, pipeline)
    print(f"documents: {n} ({sum(map(len, texts)) / 1e6:.1f} M characters), batch size {bs}")
    print(f"raw model.predict on preprocessed lines: {n / t_raw:10.0f} docs/s")
    print(f"raw preprocess + model.predict:          {n / t_raw_pre:10.0f} docs/s")
    print(f"classify_file (read, predict, write):    {n / t_pipe:10.0f} docs/s")
    print(f"ratio classify_file / raw predict: {t_raw / t_pipe:.3f} (target >= 0.9)")
    print(f"ratio classify_file / raw preprocess + predict: {t_raw_pre / t_pipe:.3f}")


if __name__ == "__main__":
    main()
