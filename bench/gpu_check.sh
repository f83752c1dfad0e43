#!/usr/bin/env bash
# GPU check (issue 13): one training run of a ~1B Qwen2-shaped model on one GPU through the project's trainer
# (bf16, flash-attn or SDPA, activation checkpointing, 50 steps at sequence 4096); prints tokens/s, MFU and the
# measured peak memory against the memory model. See bench/gpu_check.py.
#
#   bench/gpu_check.sh          # on a single-GPU machine: installs what it needs (best effort), then runs
#   bench/gpu_check.sh --cpu    # the CPU-sized variant (toy model, few steps), as CI runs it; installs nothing
#
# PYTHON selects the interpreter (default: .venv/bin/python, created if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if [[ "${1:-}" != "--cpu" ]]; then
    if [[ ! -x "$PY" ]]; then
        python3 -m venv .venv
        PY=.venv/bin/python
    fi
    if ! "$PY" -c "import cpt_scaling, deepspeed, transformers, accelerate" 2>/dev/null; then
        DS_BUILD_OPS=0 "$PY" -m pip install -q -e .
    fi
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')"
    # Optional speed-ups of the gpu extra; the run goes on without them (SDPA, plain cross-entropy).
    "$PY" -c "import liger_kernel" 2>/dev/null || "$PY" -m pip install -q "liger-kernel>=0.5" \
        || echo "gpu_check: liger-kernel not installed; plain cross-entropy"
    "$PY" -c "import flash_attn" 2>/dev/null || "$PY" -m pip install -q --no-build-isolation "flash-attn>=2.5" \
        || echo "gpu_check: flash-attn not installed; SDPA attention"
fi
exec "$PY" bench/gpu_check.py "$@"
