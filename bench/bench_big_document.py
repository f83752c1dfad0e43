"""Peak memory of the data stage on one very large document: ``build_shards`` on a pool of one ~20 MB document
(a concatenation of the demo pool's texts) beside the demo pool, each stage in its own process.

Before shards encoded documents in pieces (``cpt_scaling.data.shards.ENCODE_CHARS``), one 20 MB document took
3.3 GB in the tokenizer call alone. The bound now: tokenizer calls of at most ``ENCODE_CHARS`` characters, ids kept
as int32 arrays, so the peak grows with the document's ids (4 bytes per token), not its Encoding objects.

    .venv/bin/python bench/bench_big_document.py --mb 20

Last line: ``big_doc_mb=<document MB> shards_peak_mb=<peak RSS of build_shards> read_peak_mb=<reading alone>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"

CHILD = r"""
import json, resource, sys
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
from cpt_scaling.data.classify import CLASSIFIED_SCHEMA
from cpt_scaling.data.docs_io import read_documents
from cpt_scaling.data.shards import build_shards
tmp, stage = Path(sys.argv[1]), sys.argv[2]
docs = read_documents(tmp / "pool.jsonl")
if stage == "shards":
    n = docs.num_rows
    labels = pa.table({"doc_id": docs.column("doc_id"), "domain": pa.array(["legal"] * n),
                       "score": pa.array([1.0] * n, pa.float32()),
                       "n_chars": pa.array([len(t) for t in docs.column("text").to_pylist()], pa.int32())},
                      schema=CLASSIFIED_SCHEMA)
    del docs
    pq.write_table(labels, tmp / "labels.parquet")
    build_shards(tmp / "out", pool_files=[tmp / "pool.jsonl"], classified_files=[tmp / "labels.parquet"],
                 tokenizer_path=tmp / "tok", domain="legal", threshold=0.5, seq_len=128, heldout_fraction=0.0,
                 heldout_max_sequences=0, shard_max_sequences=4096)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="size of the large document in MB")
    args = parser.parse_args()
    from cpt_scaling.data.docs_io import read_documents
    from cpt_scaling.data.tokenizer import train_tokenizer

    texts = [t for p in sorted((DEMO / "pool").glob("pool-*.jsonl.gz"))
             for t in read_documents(p).column("text").to_pylist()]
    big = ""
    while len(big) < args.mb * 1e6:
        big += "\n\n".join(texts) + "\n\n"
    big = big[: int(args.mb * 1e6)]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with open(tmp / "pool.jsonl", "w") as fh:
            fh.write(json.dumps({"id": "big", "text": big}) + "\n")
            for i, t in enumerate(texts):
                fh.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
        train_tokenizer(sorted((DEMO / "seeds").glob("*.jsonl.gz")), tmp / "tok", vocab_size=2048)
        peaks = {}
        for stage in ("read", "shards"):
            out = subprocess.run([sys.executable, "-c", CHILD, str(tmp), stage], capture_output=True, text=True,
                                 check=True)
            peaks[stage] = int(out.stdout.strip().splitlines()[-1])
            print(f"{stage}: peak RSS {peaks[stage]} MB", flush=True)
        manifest = json.loads((tmp / "out" / "manifest.json").read_text())
        print(f"shards: {manifest['train']['n_tokens']} train tokens from {manifest['n_selected']} documents")
    print(f"big_doc_mb={args.mb:g} shards_peak_mb={peaks['shards']} read_peak_mb={peaks['read']}")


if __name__ == "__main__":
    main()
