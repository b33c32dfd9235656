#!/usr/bin/env bash
# All GPU measurements in one go, under 8 minutes on one GPU: `bash bench/gpu_check.sh` (or --smoke on a CPU).
# The lent device machine has Python 3.12, torch, transformers and OpenCV but not PyAV or python-dotenv, and
# cannot download. Carry them as wheels in .whl/ (ignored by git; 36 MB), made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 python-dotenv
# and name .whl in the run's carry: they are installed into /tmp/site first.
# The table goes to stdout and to $OUT/gpu_check.md when $OUT is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python3}
if ! "$PY" -c "import av" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: PyAV is not installed here and no .whl/ folder of wheels was carried (see the top of $0)" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 480 "$PY" bench/gpu_check.py "$@" | tee "${OUT:-/tmp}/gpu_check.md"
