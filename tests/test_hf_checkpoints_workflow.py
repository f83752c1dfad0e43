"""The default target of a sweep whose sizes are local Hugging Face checkpoints, end to end: a tiny Qwen2 (tied
embeddings) and a tiny Llama (untied embeddings, GQA, 256 positions) with a Llama-family tokenizer that adds
``<s>``, on a pool of Parquet files in nested folders (FineWeb's hub layout)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import make_workdir
from hf_checkpoints import make_hf_sweep_inputs
from transformers import AutoModelForCausalLM, AutoTokenizer
from workflow_utils import run_snakemake

from cpt_scaling.data.sequences import read_sequences

pytestmark = pytest.mark.slow

CONFIG = {  # sizes by path only; no tokenizer.vocab_size: the tokenizer's 1,500 ids, the checkpoints' 1,536 rows
    "data": {"seeds": {c: [f"data/demo/seeds/{c}.jsonl.gz"] for c in ("general", "legal", "medical", "accounting")},
             "pool": ["hf/fineweb/**/*.parquet"]},  # data/CC-MAIN-2024-10/000_00000.parquet, ...
    "tokenizer": {"path": "hf/tokenizer"},
    "shards": {"seq_len": 64, "heldout_fraction": 0.1, "heldout_max_sequences": 16},
    "domains": {"legal": {"ratios": [0.0, 0.5, 1.0]}},
    "models": {"sizes": {"m1": {"base_checkpoint": "hf/m1"}, "m2": {"base_checkpoint": "hf/m2"}}},
    "cpt": {"tokens": [4096], "checkpoints": 3},
    "training": {"batch_size": 8, "micro_batch_size": 8, "threads": 1},
    "fit": {"bootstrap": 0, "intermediate_points": True},  # one CPT budget: D-CPT fits intermediate checkpoints
}


@pytest.fixture(scope="session")
def hf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default target of the HF-checkpoint sweep, run once to completion (do not modify)."""
    workdir = make_workdir(tmp_path_factory.mktemp("hf"))
    demo = workdir / "data" / "demo"
    make_hf_sweep_inputs(workdir / "hf", sorted((demo / "seeds").glob("*.jsonl.gz")),
                         sorted((demo / "pool").glob("pool-0[01].jsonl.gz")))
    (workdir / "hf.yaml").write_text(yaml.safe_dump(CONFIG))
    result = run_snakemake(workdir, "hf.yaml")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "left out of the default target: the Chinchilla study" in result.stdout + result.stderr
    return workdir


def test_base_models_are_evaluated_and_every_decision_has_numbers(hf_run: Path) -> None:
    evals = pd.read_csv(hf_run / "results" / "tables" / "eval.csv")
    base = evals[evals["kind"] == "base"]
    assert set(base["size"]) == {"m1", "m2"} and set(base["suite"]) == {"general", "legal"}
    assert (base["D"] == 0).all()
    spec = pd.read_csv(hf_run / "results" / "tables" / "specialization_legal.csv")
    assert set(spec["size"]) == {"m1", "m2"} and spec["forgetting"].notna().all()
    assert spec["base_domain_loss"].notna().all()
    usages = pd.read_csv(hf_run / "results" / "tables" / "dcpt_usages_legal.csv")
    per_size = usages[usages["usage"].isin([1, 2])]
    assert sorted(per_size["usage"]) == [1, 1, 2, 2] and set(per_size["size"]) == {"m1", "m2"}
    assert per_size[["value", "loss"]].notna().all().all(), per_size
    law = json.loads((hf_run / "results" / "laws" / "dcpt_legal.json").read_text())
    assert all(math.isfinite(b["general_loss"]) and math.isfinite(b["domain_loss"]) for b in law["base"].values())
    assert not (hf_run / "results" / "figures" / "chinchilla_fit.pdf").exists()


def test_final_checkpoint_loads_with_plain_transformers_and_matches_the_eval_table(hf_run: Path) -> None:
    [run] = (hf_run / "artifacts" / "train").glob("cpt-m2-legal-r1-d4096-*")
    final = run / json.loads((run / "checkpoints.json").read_text())["final"]
    model = AutoModelForCausalLM.from_pretrained(final, local_files_only=True, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(final, local_files_only=True)
    assert model.config.model_type == "llama" and not model.config.tie_word_embeddings
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    assert len(tokenizer) == 1500 and (tokenizer.bos_token, tokenizer.eos_token) == ("<s>", "</s>")
    [shards] = (hf_run / "artifacts" / "shards").glob("legal-*")
    rows = np.array(pq.read_table(shards / "heldout.parquet").column("input_ids").to_pylist(), dtype=np.int64)
    ids = torch.from_numpy(rows)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="mean").item()
    evals = pd.read_csv(hf_run / "results" / "tables" / "eval.csv")
    row = evals[(evals["run"] == "cpt-m2-legal-r1-d4096") & (evals["suite"] == "legal") & (evals["split"] == "test")
                & (evals["D"] == evals["D"].max())]
    assert len(row) == 1
    assert loss == pytest.approx(float(row["loss"].iloc[0]), rel=1e-4)


def test_asking_for_a_chinchilla_figure_names_the_reason_and_the_keys(hf_run: Path) -> None:
    result = run_snakemake(hf_run, "hf.yaml", "results/figures/chinchilla_fit.pdf", "--dry-run")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "Error" not in out, out[-3000:]
    [line] = [ln for ln in out.splitlines() if "chinchilla_fit.pdf" in ln]
    assert "hf.yaml" in line and "pretraining runs" in line and "base_checkpoint" in line


def test_shards_hold_each_document_as_the_llama_tokenizer_frames_it(hf_run: Path) -> None:
    """Must-show 1: every training document of the shards, read from the nested Parquet pool, decodes as
    ``<s> … </s>`` (the tokenizer's BOS, the text, its EOS), with neither inside."""
    tokenizer = AutoTokenizer.from_pretrained(hf_run / "hf" / "tokenizer", local_files_only=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pool_ids = set(pq.read_table(hf_run / "hf" / "fineweb" / "data" / "CC-MAIN-2024-11" / "000_00000.parquet")
                   .column("id").to_pylist())
    for shards in sorted((hf_run / "artifacts" / "shards").glob("*-*")):
        manifest = json.loads((shards / "manifest.json").read_text())
        assert manifest["document_prefix_ids"] == [bos] and manifest["eos_token_id"] == eos
        docs = [d for d in pq.read_table(shards / "documents.parquet").to_pylist() if d["split"] == "train"]
        stored = np.concatenate([read_sequences(shards / s["file"]).ravel()
                                 for s in manifest["train"]["shards"]]).tolist()
        start, checked = 0, 0
        for d in docs:
            doc = stored[start:start + d["n_tokens"]]
            if len(doc) < d["n_tokens"]:
                break  # the remainder cut at the last sequence
            text = tokenizer.decode(doc)
            assert text.startswith("<s>") and text.endswith("</s>"), text[:80]
            assert bos not in doc[1:-1] and eos not in doc[1:-1]
            start, checked = start + d["n_tokens"], checked + 1
        assert checked > 10, shards.name
    pool = next((hf_run / "artifacts" / "shards").glob("pool-*"))
    assert pool_ids & {d["doc_id"] for d in pq.read_table(pool / "documents.parquet").to_pylist()}  # the 2nd dump


def test_a_seq_len_beyond_the_llama_checkpoints_positions_is_refused_when_the_workflow_parses(hf_run: Path) -> None:
    """Must-show 1: shards.seq_len 512 against the Llama m2's max_position_embeddings 256 (the Qwen2 m1 takes
    1,024) stops the parse with one line naming both (and the checkpoint's config.json); nothing runs."""
    (hf_run / "long.yaml").write_text(yaml.safe_dump({**CONFIG, "shards": {**CONFIG["shards"], "seq_len": 512}}))
    try:
        result = run_snakemake(hf_run, "long.yaml", "--dry-run")
    finally:
        (hf_run / "long.yaml").unlink()
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    [line] = [ln for ln in out.splitlines() if "seq_len" in ln]
    assert "seq_len: 512 is longer than models.sizes.m2's max_position_embeddings 256 (hf/m2/config.json)" in line


def test_the_final_llama_checkpoint_differs_from_its_base_in_its_weights_only(hf_run: Path) -> None:
    """Must-show 1: config.json as the base's but for the fields it states (the weights' dtype, the writing
    library's version); the base's generation config carried along; tokenizer files without loader settings."""
    [run] = (hf_run / "artifacts" / "train").glob("cpt-m2-legal-r1-d4096-*")
    final = run / json.loads((run / "checkpoints.json").read_text())["final"]
    base = hf_run / "hf" / "m2"
    stated = {"dtype", "torch_dtype", "transformers_version"}
    ours, theirs = (json.loads((d / "config.json").read_text()) for d in (final, base))
    assert {k: v for k, v in ours.items() if k not in stated} == {k: v for k, v in theirs.items() if k not in stated}
    assert ours["tie_word_embeddings"] is False and ours["max_position_embeddings"] == 256
    generation = json.loads((final / "generation_config.json").read_text())
    assert generation["temperature"] == 0.6 and generation["do_sample"] is True
    tokenizer_config = json.loads((final / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & set(tokenizer_config)
