"""Benchmark: a training job's check of its token stores, at the first job start and at later ones.

    .venv/bin/python bench/bench_store_check.py [--gib 2] [--stores 2] [--dir /tmp]

Writes ``--stores`` token stores of ``--gib`` GiB each into a keyed shard artifact under ``--dir``, records their
digests as the shards job does, times :func:`~cpt_scaling.core.digests.verify_file` of every store (what every
job start did before the verified stamps), then the trainer's :class:`~cpt_scaling.core.digests.BackgroundCheck`
three times: the first start (hashes every store and stamps it), a later start (stamps match: nothing hashed),
and a start after one store's mtime changed (that store hashed again). The page cache is not dropped (no root
needed), so the hashing figures are lower bounds for stores on a shared filesystem. Last line:
``before_s=<s> first_s=<s> later_s=<s> rewritten_one_s=<s> gib_read_later=<GiB>``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cpt_scaling.core.digests import BackgroundCheck, record_digests, verify_file


def _timed(stores: list[Path]) -> tuple[float, list[Path]]:
    t0 = time.perf_counter()
    check = BackgroundCheck(stores)
    check.raise_if_damaged(wait=True)
    return time.perf_counter() - t0, check.hashed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.0, help="size of each store in GiB (default 2)")
    ap.add_argument("--stores", type=int, default=2, help="number of stores (default 2)")
    ap.add_argument("--dir", default=None, help="where to write them (default: the system's temp folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        shard = Path(tmp) / "artifacts" / "shards" / "bench-0123456789abcdef"
        shard.mkdir(parents=True)
        stores = [shard / f"store{i}.u32" for i in range(args.stores)]
        block = os.urandom(1 << 24)
        for store in stores:
            with open(store, "wb") as fh:
                for _ in range(int(args.gib * 64)):
                    fh.write(block)
        record_digests(shard)
        t0 = time.perf_counter()
        for store in stores:
            verify_file(store)
        before = time.perf_counter() - t0
        first, hashed_first = _timed(stores)
        later, hashed_later = _timed(stores)
        os.utime(stores[0])  # as a rewrite would: that store's stamp no longer matches
        rewritten, hashed_rewritten = _timed(stores)
        size = sum(s.stat().st_size for s in stores) / 2**30
        print(f"{args.stores} stores, {size:.2f} GiB: every start before {before:.2f} s; "
              f"first start {first:.2f} s (hashed {len(hashed_first)}), "
              f"later start {later:.4f} s (hashed {len(hashed_later)}), after one rewrite {rewritten:.2f} s "
              f"(hashed {len(hashed_rewritten)})")
        gib_later = sum(s.stat().st_size for s in hashed_later) / 2**30
        print(f"before_s={before:.3f} first_s={first:.3f} later_s={later:.4f} "
              f"rewritten_one_s={rewritten:.3f} gib_read_later={gib_later:.2f}")


if __name__ == "__main__":
    main()
