#!/usr/bin/env bash
# GPU check (issue 25): the project's trainer through torchrun on one device: ZeRO-0 throughput, MFU and peak
# memory against the memory model; a ZeRO-3 run stopped by SIGUSR1 (resumable save timed, exit status 75) and
# resumed; the evaluation's forward throughput. See bench/gpu_check.py.
#
#   bench/gpu_check.sh --offline [--cpu]   # a bare machine without internet: a throwaway venv over the machine's
#                                          # own torch/transformers, the wheels of bench/gpu_check_wheels.txt from
#                                          # .whl/ (nothing else installed), the project from PYTHONPATH=src
#   bench/gpu_check.sh [--cpu]             # an environment that already has the project's dependencies
#
# Build the wheels where there is internet (DeepSpeed as a pure-Python wheel, its ops compiled at first use):
#   DS_BUILD_OPS=0 pip wheel --no-deps --no-build-isolation -w .whl $(grep -v '^#' bench/gpu_check_wheels.txt)
# PYTHON selects the interpreter (default: python3); GPU_CHECK_VENV the throwaway venv (default: a temp dir);
# GPU_CHECK_WHEELS the wheel directory (default: .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

args=()
offline=0
for arg in "$@"; do
    if [[ "$arg" == "--offline" ]]; then offline=1; else args+=("$arg"); fi
done

if (( offline )); then
    venv="${GPU_CHECK_VENV:-$(mktemp -d)/venv}"
    "$PY" -m venv --system-site-packages "$venv"
    mapfile -t names < <(grep -v '^#' bench/gpu_check_wheels.txt | sed '/^\s*$/d')
    wheels=()
    for name in "${names[@]}"; do
        found=("${GPU_CHECK_WHEELS:-.whl}"/"${name//-/_}"-*.whl)
        [[ -f "${found[0]}" ]] || { echo "gpu_check: no wheel for $name in ${GPU_CHECK_WHEELS:-.whl}/ (see the header)" >&2; exit 2; }
        wheels+=("${found[0]}")
    done
    "$venv/bin/python" -m pip install -q --no-index --no-deps "${wheels[@]}"
    PY="$venv/bin/python"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ " ${args[*]:-} " != *" --cpu "* ]]; then
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')"
fi
exec "$PY" bench/gpu_check.py "${args[@]}"
