#!/usr/bin/env bash
# All GPU measurements in one go, under 8 minutes on one GPU: `bash bench/gpu_check.sh`.
# On the lent device machine torch and transformers are installed but PyAV is not (no internet there):
# put a PyAV wheel in bench/wheels/ (pip download av==18.1.0 -d bench/wheels, on a machine with internet,
# and carry it) and it is installed first; otherwise the rows that need PyAV say so.
# The table goes to stdout and to $OUT/gpu_check.md when $OUT is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
if ! "$PY" -c "import av" 2>/dev/null && compgen -G "bench/wheels/av-*.whl" >/dev/null; then
  "$PY" -m pip install --quiet --no-index --find-links bench/wheels av python-dotenv || true
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 480 "$PY" bench/gpu_check.py "$@" | tee "${OUT:-/tmp}/gpu_check.md"
