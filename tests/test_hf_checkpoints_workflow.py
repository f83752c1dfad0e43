"""The default target of a sweep whose sizes are local Hugging Face checkpoints (tiny Qwen2 models), end to end."""

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

pytestmark = pytest.mark.slow

CONFIG = {  # sizes by path only; no tokenizer.vocab_size: the tokenizer's 1,500 ids, the checkpoints' 1,536 rows
    "data": {"seeds": {c: [f"data/demo/seeds/{c}.jsonl.gz"] for c in ("general", "legal", "medical", "accounting")},
             "pool": ["data/demo/pool/pool-00.jsonl.gz", "data/demo/pool/pool-01.jsonl.gz"]},
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
    make_hf_sweep_inputs(workdir / "hf", sorted((workdir / "data" / "demo" / "seeds").glob("*.jsonl.gz")))
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
    assert model.config.model_type == "qwen2" and model.config.tie_word_embeddings
    assert len(tokenizer) == 1500 and tokenizer.eos_token == "<|endoftext|>"
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
