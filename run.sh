#!/usr/bin/env bash
# EgoClean: the whole job in one command. `bash run.sh --help` lists every setting.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ---- settings (flags below override them) ------------------------------------------------------------------
COMMAND=auto                      # auto | 1 | 2 | all | test
WORKER=factory_001/worker_001
CLIPS=00001,00002
SOURCE=""                         # a local folder laid out like the Hub, instead of downloading
SAMPLE=0                          # 1 = the built-in synthetic sample, offline
OUT=data
HFOV=""                           # empty = widest view with no black pixel (about 94 deg)
CODEC=h264
CRF=18
PRESET=veryfast
MODEL=facebook/vjepa2-vitl-fpc64-256
DEVICE=auto
DTYPE=auto
BATCH_SIZE=8
WINDOW=64
STRIDE_S=1.0
FRAME_STEP=1
CROP=center
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

usage() {
  cat <<EOF
Usage: bash run.sh [COMMAND] [OPTIONS]

EgoClean turns raw Egocentric-10K fisheye video into rectified clips (phase 1) and V-JEPA 2 temporal
structure: cycles, repeats, anomalies, with plots (phase 2). The first run makes a virtualenv in $VENV and
installs requirements.txt into it.

Commands:
  (none)   with a Hugging Face token (HF_KEY or HF_TOKEN in .env): phase 1 on the chosen clips;
           without one: both phases on the built-in sample clip, offline
  1        phase 1 only: download, extract, rectify
  2        phase 2 only: V-JEPA 2 embeddings + analysis of the phase 1 outputs (use a GPU)
  all      phase 1 then phase 2
  test     run the test suite (pytest); arguments after -- go to pytest

Phase 1 options:
  --worker F/W       factory/worker on the Hub                    (default: $WORKER)
  --clips LIST       clip indices, '1-5' or 'all'                 (default: $CLIPS)
  --source DIR       read tars from a local folder laid out like the Hub
  --sample           use the built-in synthetic sample, offline, even with a token
  --out DIR          output folder                                (default: $OUT)
  --hfov DEG         rectified horizontal field of view           (default: widest with no black pixel, ~94)
  --codec C          h264 or h265                                 (default: $CODEC)
  --crf N            x264/x265 quality, lower is better           (default: $CRF)
  --preset P         x264/x265 speed preset                       (default: $PRESET)
Phase 2 options:
  --model ID|DIR     V-JEPA 2 checkpoint, Hub id or local folder  (default: $MODEL)
  --device D         auto, cuda, mps or cpu                       (default: $DEVICE)
  --dtype T          auto, float16, bfloat16 or float32           (default: $DTYPE)
  --batch-size N     windows per model call                       (default: $BATCH_SIZE)
  --window N         frames per window                            (default: $WINDOW)
  --stride-s S       seconds between windows                      (default: $STRIDE_S)
  --frame-step N     use every n-th frame in a window             (default: $FRAME_STEP)
  --crop C           center, or three (left+centre+right, averaged) (default: $CROP)
Environment: PYTHON (default python3), VENV (default .venv), EGOCLEAN_NO_INSTALL=1 to use VENV as it is.

Examples:
  bash run.sh                                   # sample (no token) or the two POC clips (token)
  bash run.sh all --clips all                   # a whole worker, both phases (on a GPU box)
  bash run.sh 2 --batch-size 16 --crop three    # phase 2 again with other settings
EOF
}

say() { printf '[run.sh] %s\n' "$*" >&2; }
die() { printf '[run.sh] error: %s\n' "$*" >&2; exit 2; }

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;  # the rest goes to pytest (bash run.sh test -- -k camera)
    1|2|all|test) COMMAND=$1 ;;
    --sample) SAMPLE=1 ;;
    --worker|--clips|--source|--out|--hfov|--codec|--crf|--preset|--model|--device|--dtype|--batch-size|--window|--stride-s|--frame-step|--crop)
      (($# >= 2)) || die "$1 needs a value (see bash run.sh --help)"
      name=$(printf '%s' "${1#--}" | tr 'a-z-' 'A-Z_')
      printf -v "$name" '%s' "$2"
      shift ;;
    *) die "unknown argument '$1' (see bash run.sh --help)" ;;
  esac
  shift
done

# ---- prerequisites -----------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.10 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python 3.10 or newer is needed, $PYTHON is $("$PYTHON" -V 2>&1)"

free_gb() { mkdir -p "$1" && df -Pk "$1" | awk 'NR==2 {printf "%d", $4 / 1048576}'; }
need_gb() {  # need_gb FOLDER GB WHAT
  local have; have=$(free_gb "$1")
  ((have >= $2)) || die "$1 has $have GB free, $3 needs about $2 GB: free some space or use --out elsewhere"
}

pip_quiet() {  # pip, without the one harmless line some machines' pip config prints for every package
  "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

stamp="$VENV/.egoclean-requirements"
if [[ ${EGOCLEAN_NO_INSTALL:-0} == 1 ]]; then
  : # use $VENV as it is (the tests run run.sh from inside an existing environment)
elif [[ ! -f "$stamp" ]] || ! cmp -s requirements.txt "$stamp"; then
  need_gb . 8 "the virtualenv (PyTorch is large)"
  say "installing dependencies into $VENV (first run only; a few minutes)"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  pip_quiet install --quiet --upgrade pip
  pip_quiet install --quiet -r requirements.txt
  cp requirements.txt "$stamp"
fi
PY="$VENV/bin/python"

if [[ $COMMAND == test ]]; then
  say "running the tests"
  exec "$PY" -m pytest "$@"
fi

# ---- which data: the Hub, a local folder, or the built-in sample -------------------------------------------
has_token=$("$PY" -c 'from fisheye.fetch import resolve_token; print(int(resolve_token() is not None))')
if [[ $SAMPLE == 0 && -z $SOURCE && $has_token == 0 ]]; then
  say "no Hugging Face token (HF_KEY or HF_TOKEN in .env): running offline on the built-in sample clip"
  SAMPLE=1
fi
if [[ $COMMAND == auto ]]; then
  if [[ $SAMPLE == 1 ]]; then COMMAND=all; else COMMAND=1; fi
fi
data_out=$OUT
phase1=(-m fisheye --out "$OUT" --codec "$CODEC" --crf "$CRF" --preset "$PRESET")
[[ -n $HFOV ]] && phase1+=(--hfov "$HFOV")
if [[ $SAMPLE == 1 ]]; then
  phase1+=(--sample)
  data_out=$OUT/sample
else
  phase1+=(--worker "$WORKER" --clips "$CLIPS")
  [[ -n $SOURCE ]] && phase1+=(--source "$SOURCE")
fi
clip_dir=$("$PY" -c 'import sys; from pathlib import Path; from fisheye.fetch import WorkerRef; from fisheye.pipeline import output_dir
print(output_dir(Path(sys.argv[1]), WorkerRef.parse(sys.argv[2])))' "$data_out" "$([[ $SAMPLE == 1 ]] && echo factory_001/worker_001 || echo "$WORKER")")

# ---- phase 1 -----------------------------------------------------------------------------------------------
if [[ $COMMAND == 1 || $COMMAND == all ]]; then
  [[ $SAMPLE == 1 || -n $SOURCE ]] || need_gb "$OUT" 4 "downloading ~1 GB shards and rectifying them"
  say "phase 1: fetch and rectify -> $clip_dir"
  "$PY" "${phase1[@]}"
fi

# ---- phase 2 -----------------------------------------------------------------------------------------------
if [[ $COMMAND == 2 || $COMMAND == all ]]; then
  ls "$clip_dir"/rectified_clip_*.mp4 >/dev/null 2>&1 || die "no rectified clips in $clip_dir: run phase 1 first (bash run.sh 1)"
  model=$MODEL
  if [[ $SAMPLE == 1 && $MODEL == facebook/vjepa2-vitl-fpc64-256 ]]; then
    model=$("$PY" VJEPA/tiny_model.py --pick "$MODEL" --folder "$data_out/tiny-vjepa2-random-init")
  fi
  say "phase 2: V-JEPA 2 embeddings ($model) -> $clip_dir"
  "$PY" VJEPA/encode.py "$clip_dir" --model "$model" --device "$DEVICE" --dtype "$DTYPE" \
    --batch-size "$BATCH_SIZE" --window "$WINDOW" --stride-s "$STRIDE_S" --frame-step "$FRAME_STEP" --crop "$CROP"
  say "phase 2: temporal structure -> $clip_dir"
  "$PY" VJEPA/analyze.py "$clip_dir" --joint
  say "results:"
  for f in "$clip_dir"/*_diagnostics.png "$clip_dir"/*_analysis.json; do [[ -e $f ]] && say "  $f"; done
fi
exit 0
