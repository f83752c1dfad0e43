"""Held-out loss of a WSD branch against a cosine run of the same length D (issue 14, must-show 2).

Real text: the demo's general and legal seed documents, a byte-level BPE of 1,024 tokens trained on them, packed
into 64-token sequences (10 % of the legal sequences held out). Model: 2 layers, d_model 64, 4 heads, d_ff 256.
Both runs continue at domain ratio 0.5 for D tokens from the same initial weights: the cosine run warms up over
the same absolute steps; the WSD run is a trunk at constant LR to (1 - c)·D plus its decay branch (c = 0.1,
1-sqrt by default), trained as the workflow does (two jobs, the branch continuing the trunk's full state).

    .venv/bin/python bench/bench_wsd_vs_cosine.py [--steps 1200] [--decay-fraction 0.1] [--decay-shape 1-sqrt]

Last line: ``wsd_vs_cosine_rel=<(WSD - cosine) / cosine of the held-out loss> cosine=<loss> wsd=<loss>``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cpt_scaling.data.shards import write_token_file
from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer
from cpt_scaling.evaluate.heldout import evaluate_checkpoints
from cpt_scaling.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
SEQ, BATCH, VOCAB = 64, 8, 1024


def _texts(name: str) -> list[str]:
    with gzip.open(REPO / "data" / "demo" / "seeds" / f"{name}.jsonl.gz", "rt") as fh:
        return [json.loads(line)["text"] for line in fh]


def _rows(tokenizer, texts: list[str]) -> np.ndarray:
    ids: list[int] = []
    for text in texts:
        ids += [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    n = len(ids) // SEQ
    return np.asarray(ids[:n * SEQ], dtype=np.int32).reshape(n, SEQ)


def _shard_dir(directory: Path, rows: np.ndarray) -> Path:
    directory.mkdir(parents=True)
    entry = write_token_file(directory / "train.u32", rows)
    manifest = {"seq_len": SEQ, "vocab_size": VOCAB, "token_dtype": "uint32",
                "train": {"n_sequences": len(rows), "n_tokens": int(rows.size), "token_file": entry["token_file"],
                          "max_token_id": entry["max_token_id"]}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200, help="optimizer steps of D")
    parser.add_argument("--decay-fraction", type=float, default=0.1, help="c: share of D spent decaying")
    parser.add_argument("--decay-shape", choices=["linear", "1-sqrt"], default="1-sqrt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seeds = [REPO / "data" / "demo" / "seeds" / f"{n}.jsonl.gz" for n in ("general", "legal")]
        train_tokenizer(seeds, root / "tok", vocab_size=VOCAB)
        tok = load_tokenizer(root / "tok")
        general, legal = _rows(tok, _texts("general")), _rows(tok, _texts("legal"))
        held = max(1, len(legal) // 10)
        heldout = root / "heldout.parquet"
        pq.write_table(pa.table({"input_ids": pa.array([r.tolist() for r in legal[:held]],
                                                       type=pa.list_(pa.int32()))}), heldout)
        dirs = {"general_shards": str(_shard_dir(root / "general", general)),
                "domain_shards": str(_shard_dir(root / "legal", legal[held:]))}
        opt = {"lr": 3e-3, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0,
               "warmup_steps": args.steps // 20}
        base = {"model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_ff": 256}, "vocab_size": VOCAB,
                "seq_len": SEQ, "init": {"kind": "scratch"}, "ratio": 0.5, "tokens": args.steps * BATCH * SEQ,
                "batch_size": BATCH, "micro_batch_size": BATCH, "checkpoint_tokens": [], "seed": 0, "threads": 1,
                "deepspeed": {"zero_stage": 0}, "log_every": 50, **dirs}
        cosine = train({**base, "optimizer": {**opt, "schedule": "cosine"}}, root / "cosine")
        point = (args.steps - round(args.decay_fraction * args.steps)) * BATCH * SEQ
        trunk = train({**base, "tokens": point, "checkpoint_tokens": [point], "keep_final_state": True,
                       "optimizer": {**opt, "schedule": "constant"}}, root / "trunk")
        wsd = train({**base, "init": {"kind": "state", "path": str(root / "trunk" / trunk["final"])},
                     "optimizer": {**opt, "schedule": "wsd", "decay_fraction": args.decay_fraction,
                                   "decay_shape": args.decay_shape}},
                    root / "branch")
        losses = {}
        for name, run in (("cosine", cosine), ("wsd", wsd)):
            table = evaluate_checkpoints([(0, root / name.replace("wsd", "branch") / run["final"])],
                                         {"legal": heldout}).to_pydict()
            losses[name] = table["loss"][0]
        rel = (losses["wsd"] - losses["cosine"]) / losses["cosine"]
        print(f"held-out legal loss after {args.steps} steps ({args.steps * BATCH * SEQ:,} tokens): cosine "
              f"{losses['cosine']:.4f}, WSD branch (c = {args.decay_fraction}, {args.decay_shape}) "
              f"{losses['wsd']:.4f}")
        print(f"wsd_vs_cosine_rel={rel:.4f} cosine={losses['cosine']:.4f} wsd={losses['wsd']:.4f}")


if __name__ == "__main__":
    main()
