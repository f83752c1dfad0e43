"""Cut the demo slice shipped in data/demo/ from the shared corpus (run once by maintainers).

Seeds: the first ``--seed-docs`` documents of each domain, labelled. Pool: the following documents of every domain,
up to ``--pool-chars`` characters per domain, shuffled together and split into ``--pool-files`` unlabelled files.
The source field is kept so classifier accuracy on the pool can be audited.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

DOMAINS = ("general", "legal", "medical", "accounting")


def read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as raw, open_text(raw) as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


def open_text(raw):
    import io

    return io.TextIOWrapper(raw, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--out", type=Path, default=Path("data/demo"))
    ap.add_argument("--seed-docs", type=int, default=120)
    ap.add_argument("--pool-chars", type=int, default=550_000)
    ap.add_argument("--general-pool-chars", type=int, default=900_000)
    ap.add_argument("--pool-files", type=int, default=4)
    args = ap.parse_args()
    pool: list[dict] = []
    for domain in DOMAINS:
        docs = read(args.corpus / f"{domain}.jsonl.gz")
        seeds = [{"id": d["id"], "text": d["text"], "label": domain} for d in docs[: args.seed_docs]]
        write(args.out / "seeds" / f"{domain}.jsonl.gz", seeds)
        budget = args.general_pool_chars if domain == "general" else args.pool_chars
        used = 0
        for d in docs[args.seed_docs :]:
            if used >= budget:
                break
            pool.append({"id": d["id"], "text": d["text"], "source": d["source"]})
            used += len(d["text"])
    random.Random(0).shuffle(pool)
    for i in range(args.pool_files):
        write(args.out / "pool" / f"pool-{i:02d}.jsonl.gz", pool[i :: args.pool_files])


if __name__ == "__main__":
    main()
