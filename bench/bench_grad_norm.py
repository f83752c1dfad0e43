"""What the logged gradient norm costs under ZeRO-0 on CPU: the trainer's ``_grad_norm`` (the 2-norm of every
parameter's gradient, computed on logged steps only) against one training step (forward, backward, AdamW) of the
same model, fp32, 1 thread. CPU seconds of this process (``time.process_time``), median over ``--repeats``.

Default model: the demo's "s" size as in ``bench_train.py`` (2 layers, d_model 64, d_ff 256, vocab 2048, seq_len
128, batch 16).

    .venv/bin/python bench/bench_grad_norm.py [--layers 2] [--d-model 64] [--repeats 20]

Last line: ``norm_ms=<one norm> step_ms=<one step> norm_share=<norm / step> per_step_at_log_every_10=<share / 10>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cpt_scaling.train.model import build_model
from cpt_scaling.train.trainer import _grad_norm


def _cpu_ms(fn: object, repeats: int) -> float:
    """Median CPU milliseconds of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()  # type: ignore[operator]
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    size = {"n_layers": args.layers, "d_model": args.d_model, "n_heads": 2, "d_ff": 4 * args.d_model}
    model = build_model(size, args.vocab, args.seq_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq_len))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()

    step_ms = _cpu_ms(step, args.repeats)
    norm_ms = _cpu_ms(lambda: float(_grad_norm(model)), args.repeats)  # the gradients of the last step
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {size}, vocab {args.vocab}, {n_params:,} parameters, seq_len {args.seq_len}, batch {args.batch}, "
          f"1 thread, median of {args.repeats}")
    share = norm_ms / step_ms
    print(f"norm_ms={norm_ms:.3f} step_ms={step_ms:.1f} norm_share={share:.4f} "
          f"per_step_at_log_every_10={share / 10:.5f}")


if __name__ == "__main__":
    main()
