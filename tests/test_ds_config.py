"""DeepSpeed config of a training spec: ZeRO++ hpZ for multi-node ZeRO-3, and its memory in the memory model."""

from __future__ import annotations

from pathlib import Path

from tiny_shards import tiny_spec

from cpt_scaling.cost.memory import ModelShape, TrainSetup, model_state_bytes
from cpt_scaling.train.ds_config import deepspeed_config
from cpt_scaling.train.spec_types import TrainSpec


def test_multi_node_zero3_partitions_the_weights_a_second_time_within_each_node(tmp_path: Path) -> None:
    spec = TrainSpec.from_json(tiny_spec(tmp_path, None, batch_size=64, micro_batch_size=1,
                                         deepspeed={"zero_stage": 3}))
    two_nodes = deepspeed_config(spec, 16, bf16=True, ranks_per_node=8)["zero_optimization"]
    assert two_nodes["zero_hpz_partition_size"] == 8
    for ranks_per_node in (16, None):  # one node: every gather is intra-node already
        assert "zero_hpz_partition_size" not in deepspeed_config(spec, 16, bf16=True,
                                                                 ranks_per_node=ranks_per_node)["zero_optimization"]
    zero2 = TrainSpec.from_json(tiny_spec(tmp_path, None, batch_size=64, micro_batch_size=1,
                                          deepspeed={"zero_stage": 2}))
    assert "zero_hpz_partition_size" not in deepspeed_config(zero2, 16, bf16=True, ranks_per_node=8)[
        "zero_optimization"]


def test_hpz_costs_one_more_bf16_partition_per_node() -> None:
    shape = ModelShape(28, 3584, 28, 4, 18944, 152064, 6_525_621_760)
    flat = TrainSetup(seq_len=4096, micro_batch_size=2, gpus=16, zero_stage=3)
    hpz = TrainSetup(seq_len=4096, micro_batch_size=2, gpus=16, zero_stage=3, hpz_partition=8)
    assert model_state_bytes(shape, hpz)[0] - model_state_bytes(shape, flat)[0] == round(2 * shape.total_params / 8)
    cfg = {"shards": {"seq_len": 4096}, "cost": {"gpus_per_job": 16, "nodes_per_job": 2},
           "training": {"micro_batch_size": 2, "zero_stage": 3, "offload_optimizer": False,
                        "activation_checkpointing": True, "grad_accum_dtype": "fp32", "processes_per_node": 8}}
    assert TrainSetup.from_config(cfg).hpz_partition == 8
    assert TrainSetup.from_config({**cfg, "cost": {"gpus_per_job": 8, "nodes_per_job": 1}}).hpz_partition == 0
