#!/usr/bin/env bash
# All GPU measurements in one go, under 8 minutes on one GPU: `bash bench/gpu_check.sh`.
# On the lent device machine torch and transformers are installed but PyAV is not (no internet there):
# the NVDEC row then says so. The table goes to stdout and to $OUT/gpu_check.md when $OUT is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 480 "$PY" bench/gpu_check.py "$@" | tee "${OUT:-/tmp}/gpu_check.md"
