#!/usr/bin/env bash
# The path a GPU machine with no package registry takes, run here on the CPU (CI runs it):
# an environment built like that machine's image, the carried wheels installed with
# pip --no-index --target, then benchmarks/gpu_offline.sh with the device cpu, exactly as the
# GPU command runs it with cuda. It fails, naming the module, if anything the run imports is
# missing from the image plus the wheels.
#
#   bash benchmarks/gpu_dry_run.sh [JOB...]   # JOB: check, multi30k (default both)
#
# 1. VENV (default .venv312-image): Python 3.12 with the image's torch 2.11.0 (PyPI's CUDA build;
#    its CUDA libraries are installed, never used here), numpy 2, sentencepiece, sacrebleu and what
#    else the run may import; gpu_image.py checks that it holds nothing the image lacks, and
#    fairseq, hydra, omegaconf and bitarray must not import there. Kept for the next run while
#    IMAGE_PINS stay the same (a fresh clone builds it: about 2 GB from PyPI, 5 GB on disk).
# 2. benchmarks/gpu_wheels.sh .gpu_wheels (about 20 MB from PyPI)
# 3. gpu_offline.sh check cpu (gpu_check.py at its smallest sizes) and multi30k cpu (the recipe's
#    full29k-tiny setting), each into a fresh OUT that must hold at most 8 plainly named files, as
#    the GPU machine sends back.
# PYTHON312 names a Python 3.12 (else python3.12 on PATH, else pyenv's 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv312-image}
WHEELS=.gpu_wheels
# The image's versions where they are known (torch 2.11.0+cu130, numpy 2.5.2, sentencepiece 0.2.2);
# the rest as PyPI has them. All are distributions the image holds (gpu_image_packages.txt):
# python-dateutil 4 (matplotlib's) would bring tzdata, which the image lacks, so the 2.x it has.
IMAGE_PINS=(torch==2.11.0 torchaudio==2.11.0 numpy==2.5.2 sentencepiece==0.2.2 sacrebleu pyyaml tqdm regex
  packaging pytest matplotlib "python-dateutil<3" scikit-learn)
START=$(date +%s)
say() { echo "[gpu_dry_run $(( $(date +%s) - START ))s] $*"; }

find_python312() {
  local c
  for c in "${PYTHON312:-}" python3.12 "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python; do
    if [ -n "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if [ ! -f "$VENV/.image-pins" ] || [ "$(cat "$VENV/.image-pins")" != "${IMAGE_PINS[*]}" ]; then
  PY312=$(find_python312) || { echo "gpu_dry_run: no Python 3.12 found (set PYTHON312)" >&2; exit 1; }
  say "building $VENV like the GPU image: $("$PY312" -V) with ${IMAGE_PINS[*]}"
  rm -rf "$VENV"
  "$PY312" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --progress-bar off "${IMAGE_PINS[@]}" 2>&1 \
    | grep -v -e "^WARNING: Location" -e "^\[notice\]" || true
  "$VENV/bin/python" -c "import torch, numpy" || { echo "gpu_dry_run: the image-like environment does not import torch" >&2; exit 1; }
  echo "${IMAGE_PINS[*]}" > "$VENV/.image-pins"
fi
say "$VENV: $("$VENV/bin/python" -c 'import sys, torch, numpy; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}")')"
"$VENV/bin/python" benchmarks/gpu_image.py env | tail -1
for module in fairseq hydra omegaconf bitarray; do  # the image lacks them: so must this environment
  if "$VENV/bin/python" -c "import $module" 2>/dev/null; then
    echo "gpu_dry_run: $module imports in $VENV, but the GPU image does not have it" >&2; exit 1
  fi
done

say "benchmarks/gpu_wheels.sh $WHEELS"
PYTHON="$VENV/bin/python" bash benchmarks/gpu_wheels.sh "$WHEELS"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
status=0
JOBS=("$@")
[ ${#JOBS[@]} -gt 0 ] || JOBS=(check multi30k)
for job in "${JOBS[@]}"; do
  case "$job" in check|multi30k) ;; *) echo "gpu_dry_run: unknown job '$job' (check or multi30k)" >&2; exit 2 ;; esac
  say "gpu_offline.sh $job cpu"
  if OUT="$TMP/out-$job" PYTHON="$VENV/bin/python" SITE="$TMP/site" WORK="$TMP/work" \
      bash benchmarks/gpu_offline.sh "$job" cpu "$WHEELS" > "$TMP/$job.log" 2>&1; then
    say "$job: ok ($(ls "$TMP/out-$job" | tr '\n' ' '))"
  else
    status=1
    echo "gpu_dry_run: gpu_offline.sh $job cpu FAILED; its last lines:" >&2
    tail -40 "$TMP/$job.log" >&2
  fi
  # what the GPU machine sends back: at most 8 files, plainly named, at most 2 folders down
  files=$(cd "$TMP/out-$job" && find . -type f | sed 's|^\./||')
  if [ "$(echo "$files" | wc -l)" -gt 8 ] || echo "$files" | grep -q -v -E '^([A-Za-z0-9._-]+/){0,2}[A-Za-z0-9._-]+$'; then
    echo "gpu_dry_run: $job wrote more than 8 files or odd names into OUT: $files" >&2; status=1
  fi
done
if [ -f "$TMP/out-check/report.md" ] && ! grep -q "FAILED steps: none" "$TMP/out-check/report.md"; then
  grep "FAILED steps" "$TMP/out-check/report.md" >&2; status=1
fi
say "done, exit $status"
exit $status
