"""The chunked loss (ZeRO-3 on GPU) equals HF's causal-LM loss and gradients and never keeps a logits tensor."""

from __future__ import annotations

import torch

from cpt_scaling.cost.memory import LOSS_CHUNK_ROWS, ModelShape, TrainSetup, logit_bytes
from cpt_scaling.train.chunked_loss import apply_chunked_loss, chunked_cross_entropy
from cpt_scaling.train.model import build_model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64}, 96, 64)


def test_chunked_loss_matches_the_hf_loss_and_gradients() -> None:
    ids = torch.randint(0, 96, (3, 50), generator=torch.Generator().manual_seed(1))
    plain, chunked = _model(), _model()
    assert apply_chunked_loss(chunked)
    expected = plain(input_ids=ids, labels=ids).loss
    expected.backward()
    got = chunked_cross_entropy(chunked.lm_head, chunked.model(input_ids=ids).last_hidden_state, ids, rows=16)
    got.backward()
    assert torch.allclose(got, expected, rtol=1e-6, atol=0)
    for (name, p), q in zip(plain.named_parameters(), chunked.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name
    assert torch.allclose(chunked(input_ids=ids, labels=ids).loss, expected, rtol=1e-6, atol=0)  # the patched forward


def test_no_logits_are_saved_for_backward() -> None:
    ids = torch.randint(0, 96, (2, 64), generator=torch.Generator().manual_seed(2))
    model = _model()
    apply_chunked_loss(model)
    widths: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        widths.append(t.shape[-1] if t.dim() else 0)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids).loss.backward()
    vocab = model.config.vocab_size
    assert widths and vocab not in widths  # no (rows x V) tensor kept between forward and backward


def test_memory_model_counts_one_chunk_of_logits() -> None:
    shape = ModelShape(48, 5120, 40, 8, 13824, 152064, 13_000_000_000)
    plain = TrainSetup(seq_len=4096, micro_batch_size=2, gpus=8, zero_stage=3)
    chunked = TrainSetup(seq_len=4096, micro_batch_size=2, gpus=8, zero_stage=3, chunked_loss=True)
    assert logit_bytes(shape, plain) == 8192 * 152064 * (2 + 12)  # 16.2 GiB
    assert logit_bytes(shape, chunked) == LOSS_CHUNK_ROWS * 152064 * (2 + 12) == logit_bytes(shape, plain) // 4
    cfg = {"shards": {"seq_len": 4096}, "cost": {"gpus_per_job": 8, "nodes_per_job": 1},
           "training": {"micro_batch_size": 2, "zero_stage": 3, "offload_optimizer": False,
                        "activation_checkpointing": True, "grad_accum_dtype": "fp32", "processes_per_node": 8}}
    assert TrainSetup.from_config(cfg).chunked_loss  # what the trainer does under ZeRO-3 on GPU
