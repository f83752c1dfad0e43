"""Throughput of ``classify_file`` against a bare ``model.predict`` loop on the same texts.

``classify_file`` loads the model, reads a JSONL.gz pool, preprocesses (lowercase, newlines to spaces), predicts
in batches and writes zstd Parquet. The baseline holds the raw texts in memory and does only what fastText needs
to predict them: replace newlines (fastText predicts one line) and call ``model.predict(lines, k=1)`` per batch.
The ratio is therefore the cost of everything around the model. The two alternate, best of ``--repeats`` each.

    .venv/bin/python bench/bench_classify.py --copies 16 --repeats 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

from timing import timed

from cpt_scaling.data.classify import classify_file, load_classifier, train_classifier
from cpt_scaling.data.docs_io import read_documents

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
DOMAINS = ["accounting", "general", "legal", "medical"]


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
    parser.add_argument("--copies", type=int, default=16, help="copies of the 1,060-document demo pool")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096, help="texts per predict call in the raw loop")
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
        bs = args.batch_size

        def raw_predict() -> None:
            for i in range(0, n, bs):
                model.predict([t.replace("\n", " ") for t in texts[i : i + bs]], k=1)

        def pipeline() -> None:
            classify_file(model_path, tmp / "pool.jsonl.gz", tmp / "out.parquet")

        times: dict[str, list[float]] = {"raw": [], "stage": []}
        for _ in range(args.repeats):
            times["raw"].append(timed(raw_predict))
            times["stage"].append(timed(pipeline))
    t_raw, t_pipe = min(times["raw"]), min(times["stage"])
    print(f"documents: {n} ({sum(map(len, texts)) / 1e6:.1f} M characters), raw loop batch size {bs}")
    print(f"raw newline removal + model.predict:      {n / t_raw:10.0f} docs/s  (all: {rates(n, times['raw'])})")
    print(f"classify_file (load, read, predict, write): {n / t_pipe:8.0f} docs/s  (all: {rates(n, times['stage'])})")
    print(f"ratio classify_file / raw predict: {t_raw / t_pipe:.3f} (target >= 0.9)")


def rates(n: int, times: list[float]) -> str:
    """Docs/s of every repeat, for the spread."""
    return " / ".join(f"{n / t:.0f}" for t in times)


if __name__ == "__main__":
    main()
