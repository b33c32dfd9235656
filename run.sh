#!/usr/bin/env bash
# EgoClean: the whole job in one command. `bash run.sh --help` lists every setting.
# This script only prepares Python (a virtualenv with requirements.txt); the job itself is `python -m egoclean`
# (egoclean/run.py), and `bash run.sh test` runs the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

say() { printf '[run.sh] %s\n' "$*" >&2; }
die() { printf '[run.sh] error: %s\n' "$*" >&2; exit 2; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.10 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python 3.10 or newer is needed, $PYTHON is $("$PYTHON" -V 2>&1)"

pip_quiet() {  # pip, without the one harmless line some machines' pip config prints for every package
  # (and without setuptools' notice about editable installs, which is about this very layout)
  PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

stamp="$VENV/.egoclean-requirements"
if [[ ${EGOCLEAN_NO_INSTALL:-0} == 1 ]]; then
  : # use $VENV as it is (the tests run run.sh from inside an existing environment)
elif [[ ! -f "$stamp" ]] || ! cat requirements.txt pyproject.toml | cmp -s - "$stamp"; then
  mkdir -p "$VENV"
  free_gb=$(df -Pk "$VENV" | awk 'NR==2 {printf "%d", $4 / 1048576}')
  ((free_gb >= 8)) || die "$VENV has $free_gb GB free, the virtualenv needs about 8 GB (PyTorch is large)"
  say "installing dependencies into $VENV (first run only; a few minutes)"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  pip_quiet install --quiet --upgrade pip
  pip_quiet install --quiet -r requirements.txt
  cat requirements.txt pyproject.toml > "$stamp"
fi
PY="$VENV/bin/python"
# This checkout's code first, whatever else the environment has installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ ${1:-} == test ]]; then
  shift
  [[ ${1:-} == -- ]] && shift
  say "running the tests"
  exec "$PY" -m pytest "$@"
fi
exec "$PY" -m egoclean "$@"
