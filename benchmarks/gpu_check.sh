#!/usr/bin/env bash
# GPU check of the kernels (correctness at real shapes, timings, SwinIR x8 training step): one command,
# at most 8 minutes on one H100/H200, nothing downloaded. Writes benchmarks/results/gpu_check_<device>.json.
#   bash benchmarks/gpu_check.sh [--quick] [--no-compile] [--out DIR]
# PYTHON selects the interpreter (default: python on PATH). Exit: 0 ok, 1 a check failed, 2 no CUDA,
# 124 the 8-minute limit was hit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
export TRITON_DEFAULT_FP_FUSION=1
exec timeout 480 "$PY" -m srcaco2.benchmarks.gpu_check "$@"
