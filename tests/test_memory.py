"""The per-GPU memory model against DeepSpeed's own estimators and against measured CPU training peaks."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch

from cpt_scaling.cost.memory import GIB, ModelShape, TrainSetup, cheapest_fit, describe_change, estimate

# Qwen2.5 published config.json shapes: (layers, hidden, heads, kv heads, intermediate, vocab, tied embeddings).
QWEN25 = {
    "1.5B": (28, 1536, 12, 2, 8960, 151936, True),
    "3B": (36, 2048, 16, 2, 11008, 151936, True),
    "7B": (28, 3584, 28, 4, 18944, 152064, False),
    "14B": (48, 5120, 40, 8, 13824, 152064, False),
}
LINE = re.compile(r"^\s*([\d.]+)GB \|\s*([\d.]+)GB \| (.*)$")


def qwen_size(name: str) -> dict:
    L, d, h, kv, ff, V, tied = QWEN25[name]
    return {"n_layers": L, "d_model": d, "n_heads": h, "n_kv_heads": kv, "d_ff": ff, "vocab_size": V,
            "model_type": "qwen2", "tied_embeddings": tied}


def deepspeed_gpu_gib(name: str, gpus: int) -> dict[tuple[int, bool], float]:
    """Per-GPU GiB DeepSpeed's ``estimate_zero{2,3}_model_states_mem_needs_all_live`` print for the published
    shape, by (stage, offload_optimizer) (parameters not offloaded).

    The model is built on the meta device, then given real but untouched storage (``to_empty``: no page is
    written, so no memory is used) because the estimators tell parameters apart by ``data_ptr`` (0 on meta).
    """
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_live
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_live
    from transformers import Qwen2Config, Qwen2ForCausalLM

    L, d, h, kv, ff, V, tied = QWEN25[name]
    config = Qwen2Config(hidden_size=d, intermediate_size=ff, num_hidden_layers=L, num_attention_heads=h,
                         num_key_value_heads=kv, vocab_size=V, tie_word_embeddings=tied)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    model = model.to(torch.bfloat16).to_empty(device="cpu")
    model.tie_weights()
    out = {}
    for stage, fn in ((2, estimate_zero2_model_states_mem_needs_all_live),
                      (3, estimate_zero3_model_states_mem_needs_all_live)):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            fn(model, num_gpus_per_node=gpus, num_nodes=1)
        for line in buf.getvalue().splitlines():
            m = LINE.match(line)
            if not m or "offload_param=OffloadDeviceEnum.cpu" in m[3] or "zero_init=0" in m[3]:
                continue
            out[(stage, "offload_optimizer=none" not in m[3])] = float(m[2])
    assert len(out) == 4, out
    n_params = sum(p.numel() for p in model.parameters())
    shape = ModelShape.from_size(qwen_size(name), V)
    assert shape.total_params == pytest.approx(n_params, rel=2e-4)  # biases aside, the cost model's N
    return out


@pytest.mark.parametrize("name", list(QWEN25))
def test_model_states_match_deepspeed_estimators(name: str) -> None:
    shape = ModelShape.from_size(qwen_size(name), 0)
    for gpus in (1, 8):
        ds = deepspeed_gpu_gib(name, gpus)
        for (stage, offload), ds_gib in ds.items():
            setup = TrainSetup(seq_len=4096, micro_batch_size=1, gpus=gpus, zero_stage=stage,
                               offload_optimizer=offload)
            ours = estimate(shape, setup).model_states / GIB
            assert ours == pytest.approx(ds_gib, rel=0.10), (name, gpus, stage, offload, ours, ds_gib)


# Two tiny shapes (layers, width, heads, MLP, vocab, sequence, micro-batch) whose peaks are a few hundred MB.
TINY = {"A": (4, 256, 4, 704, 2048, 128, 4), "B": (2, 512, 8, 1408, 4096, 256, 2)}


def measured_peak_bytes(L: int, d: int, h: int, ff: int, V: int, T: int, b: int, checkpointing: bool) -> int:
    """Peak bytes of live tensors over two steps of a real CPU training loop (the project's model, AdamW, fp32,
    gradients kept between steps as DeepSpeed does): every allocation and free the PyTorch profiler records,
    summed in time order, from before the model is built. This is the CPU analogue of
    ``torch.cuda.max_memory_allocated``; it leaves out the process's own memory (interpreter, libraries)."""
    from torch.profiler import ProfilerActivity, profile

    from cpt_scaling.train.model import build_model

    torch.manual_seed(0)
    ids = torch.randint(0, V, (b, T))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model = build_model({"n_layers": L, "d_model": d, "n_heads": h, "d_ff": ff}, V, T)
        if checkpointing:
            model.config.use_cache = False
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
            del loss
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("name", list(TINY))
def test_estimate_within_25_percent_of_measured_cpu_peak(name: str, checkpointing: bool) -> None:
    L, d, h, ff, V, T, b = TINY[name]
    shape = ModelShape.from_size({"n_layers": L, "d_model": d, "n_heads": h, "d_ff": ff}, V)
    setup = TrainSetup(seq_len=T, micro_batch_size=b, precision="fp32", on_gpu=False,
                       activation_checkpointing=checkpointing)
    predicted = estimate(shape, setup).total
    measured = measured_peak_bytes(L, d, h, ff, V, T, b, checkpointing)
    print(f"{name} checkpointing={checkpointing}: predicted {predicted / 1e6:.1f} MB, measured "
          f"{measured / 1e6:.1f} MB, ratio {predicted / measured:.3f}")
    assert predicted == pytest.approx(measured, rel=0.25)


def test_checkpointing_lowers_the_estimate_by_what_the_layers_keep() -> None:
    shape = ModelShape.from_size(qwen_size("14B"), 0)
    base = TrainSetup(seq_len=4096, micro_batch_size=4, gpus=8, zero_stage=3)
    plain, ckpt = estimate(shape, base), estimate(shape, TrainSetup(**{**base.__dict__,
                                                                       "activation_checkpointing": True}))
    # The issue's ~155 GB of activations of 14B at micro-batch 4 x 4096 without checkpointing.
    assert 140 < plain.activations / 1e9 < 175
    assert ckpt.activations < plain.activations / 10 and ckpt.model_states == plain.model_states


def test_cheapest_fit_names_a_setting_that_fits() -> None:
    shape = ModelShape.from_size(qwen_size("14B"), 0)
    base = TrainSetup(seq_len=4096, micro_batch_size=4, gpus=8, zero_stage=2)
    assert estimate(shape, base).gib > 80
    fit = cheapest_fit(shape, base, 80 * GIB, batch_size=512)
    assert fit is not None
    setup, est = fit
    assert est.gib <= 80 and describe_change(base, setup)
    # Nothing fits a 1 GiB GPU.
    assert cheapest_fit(shape, base, 1 * GIB, batch_size=512) is None


def test_parse_time_check_only_with_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from workflow_utils import REPO

    from cpt_scaling.config.load import normalise_config, read_config_file
    from cpt_scaling.core.errors import InputError

    monkeypatch.chdir(REPO)
    raw = read_config_file("config/examples/paper_qwen.yaml")
    raw["training"]["activation_checkpointing"] = False
    with pytest.raises(InputError, match=r"^p.yaml: models.sizes.qwen2_5_14b: a training job needs [\d.]+ GiB"):
        normalise_config(raw, "p.yaml")
    raw["cost"]["gpus_per_job"] = 0  # a CPU-only cluster: no GPU memory to check
    assert normalise_config(raw, "p.yaml")["cost"]["gpus_per_job"] == 0
    raw["cost"].update(gpus_per_job=8, gpu_memory_gb=4)
    with pytest.raises(InputError, match="no setting of checkpointing, ZeRO stage, micro-batch or offload fits"):
        normalise_config(raw, "p.yaml")
    raw["cost"]["gpu_memory_gb"] = 80
    raw["training"].update(zero_stage=0, offload_optimizer=True)
    with pytest.raises(InputError, match=r"training\.offload_optimizer: needs training\.zero_stage 1, 2 or 3"):
        normalise_config(raw, "p.yaml")


def test_eval_estimate_holds_bf16_weights_and_one_logit_chunk() -> None:
    from cpt_scaling.cost.memory import EVAL_LOGIT_ROWS, eval_estimate
    from cpt_scaling.evaluate.heldout import LOGIT_ROWS

    assert EVAL_LOGIT_ROWS == LOGIT_ROWS
    shape = ModelShape.from_size(qwen_size("14B"), 0)
    est = eval_estimate(shape, 4096, 16)
    assert est.params == 2 * shape.total_params and est.grads == est.optimizer == 0
    assert est.logits == LOGIT_ROWS * shape.vocab_size * 10
    assert 40 < est.gib < 80
