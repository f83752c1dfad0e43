"""Host-memory model of a training job (cost/host_memory.py) against hand counts, and the job's --mem from it."""

from __future__ import annotations

import math

import pytest
from workflow_utils import REPO

from cpt_scaling.config.load import load_config
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost.host_memory import HOST_MARGIN, check_host_fits, host_estimate, mem_mb
from cpt_scaling.cost.memory import GIB, ModelShape, TrainSetup

# Qwen2.5-7B (config.json): 28 layers, d 3584, 28 heads / 4 KV heads, MLP 18944, 152,064 untied embedding rows.
# Per layer: q, o 3584^2 each + q bias 3584; k, v 3584 x 512 each + biases 512 each; MLP 3 x 3584 x 18944;
# two norms 2 x 3584. Non-embedding: 28 x 233,057,792 + the final norm 3584.
PER_LAYER = 2 * 3584**2 + 3584 + 2 * (3584 * 512 + 512) + 3 * 3584 * 18944 + 2 * 3584
N_7B = 28 * PER_LAYER + 3584
P_7B = N_7B + 2 * 152064 * 3584
QWEN_7B = ModelShape(28, 3584, 28, 4, 18944, 152064, N_7B)


def test_hand_count_is_qwen2_5_7b() -> None:
    assert P_7B == 7_615_616_512 == QWEN_7B.total_params


def test_zero2_on_8_gpus_every_rank_loads_the_full_bf16_model() -> None:
    setup = TrainSetup(seq_len=4096, micro_batch_size=4, gpus=8, zero_stage=2)
    est = host_estimate(QWEN_7B, setup, batch_size=256)
    # Load: 8 processes of 3 GiB, 8 ranks x 2 bytes x P (each its own bf16 model) + the file's pages once (2P).
    assert est.load_peak == 8 * 3 * GIB + 8 * 2 * P_7B + 2 * P_7B
    # Save: each rank copies its 12P/8 bytes of fp32 master and Adam state, rank 0 the 2P bf16 weights; the step's
    # rows: 32 per rank of 4096 tokens, 4 + 8 bytes each.
    assert est.train_peak == 8 * 3 * GIB + 8 * 12 * P_7B // 8 + 2 * P_7B + 8 * 32 * 4096 * 12
    assert est.total == est.load_peak  # the load is the peak: 151.7 GiB
    assert est.gib == pytest.approx(24 + 18 * P_7B / GIB) and 151 < est.gib < 152
    assert mem_mb(est, 4000) == math.ceil((24 * GIB + 18 * P_7B) * 1.2 / 2**20) == 186_369


def test_zero3_with_zero_init_loads_on_rank_0_only() -> None:
    setup = TrainSetup(seq_len=4096, micro_batch_size=2, gpus=8, zero_stage=3)
    est = host_estimate(QWEN_7B, setup, batch_size=512)
    assert est.load_peak == 8 * 3 * GIB + 2 * P_7B  # rank 0 reads the checkpoint's state dict
    # Save: each rank its optimizer partition (12P/8) and its bf16 partition (2P/8); rank 0 the gathered 2P at an
    # evaluation checkpoint.
    assert est.train_peak == 8 * 3 * GIB + 8 * (12 * P_7B // 8 + 2 * P_7B // 8) + 2 * P_7B + 8 * 64 * 4096 * 12
    assert est.total == est.train_peak and 137 < est.gib < 138
    assert mem_mb(est, 4000) == math.ceil(est.total * (1 + HOST_MARGIN) / 2**20)
    assert mem_mb(est, 480_000) == 480_000  # cost.mem_mb is the floor


def test_offload_pins_the_optimizer_partitions_and_a_scratch_build_is_fp32() -> None:
    base = TrainSetup(seq_len=4096, micro_batch_size=2, gpus=8, zero_stage=2)
    off = host_estimate(QWEN_7B, TrainSetup(seq_len=4096, micro_batch_size=2, gpus=8, zero_stage=2,
                                            offload_optimizer=True), batch_size=256)
    plain = host_estimate(QWEN_7B, base, batch_size=256)
    assert off.pinned == 8 * 16 * P_7B // 8 and off.save == 2 * P_7B  # the state is already on the host
    assert host_estimate(QWEN_7B, base, batch_size=256, scratch=True).load == 8 * 4 * P_7B > plain.load


def test_a_job_asking_more_than_a_node_has_fails_at_parse_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    cfg = load_config("config/demo.yaml")
    cfg["cost"].update(gpus_per_job=4, node_memory_gb=1000)
    check_host_fits(cfg, "demo.yaml")  # 4 processes of 3 GiB and tiny models: ~14 GB
    cfg["cost"]["node_memory_gb"] = 8
    with pytest.raises(InputError, match=r"^demo.yaml: models.sizes.\w+: a training job needs \d+ MB of host memory "
                                         r"per node .* above cost.node_memory_gb=8"):
        check_host_fits(cfg, "demo.yaml")
