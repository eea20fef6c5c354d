#!/usr/bin/env bash
# Runs the GPU check, or the full-data Multi30k pair, on a machine with no package registry, from
# the wheels and corpus that benchmarks/gpu_wheels.sh put in DIR (default .gpu_wheels).
#
#   OUT=results/ bash benchmarks/gpu_offline.sh check cuda [DIR]     # gpu_check.py, ends within 8 min
#   OUT=results/ bash benchmarks/gpu_offline.sh multi30k cuda [DIR]  # full29k-gpu, 5 epochs, stopped at 5.5 min
#   bash benchmarks/gpu_offline.sh --print [DIR]                     # the lines to run there
# (OUT and DIR relative to the folder it is started from; DIR defaults to the repository's .gpu_wheels)
# With cpu instead of cuda the same path runs at the smallest sizes (benchmarks/gpu_dry_run.sh):
# gpu_check.py's CPU sizes, and the recipe's full29k-tiny (full29k-gpu's protocol, tiny).
#
# 1. pip install --no-index --target SITE of DIR/wheels; SITE and the repository go first on
#    PYTHONPATH, SITE/bin (fairseq-preprocess, -train, -generate) first on PATH,
#    RDROP_DATA_DIR=DIR/data; torch, numpy 2 and the rest are the image's own
# 2. every module the run imports is imported once, versions printed: a missing one stops here
# 3. the job runs in WORK; OUT receives at most 5 files: console.log (all of the above),
#    report.md + results.json + logs.tar.gz (check), or results.json + loss_curves.png +
#    multi30k.tar.gz (multi30k; logs and translations, no checkpoints)
# Environment: PYTHON (default python3, the image's torch interpreter), OUT (required), SITE
# (default /tmp/rdrop-site), WORK (default /tmp/rdrop-gpu-work), BUDGET_S (check on cuda: seconds
# gpu_check.py may take, default 420), MAX_EPOCH (multi30k on cuda, default 5), LIMIT_S (multi30k:
# seconds before it is stopped and what it wrote is packed, default 330 on cuda).
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")/.."
REPO=$PWD
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/rdrop-site}
WORK=${WORK:-/tmp/rdrop-gpu-work}

usage() { echo "usage: OUT=DIR bash benchmarks/gpu_offline.sh {check|multi30k} {cuda|cpu} [WHEELS_DIR]; or --print [WHEELS_DIR]" >&2; exit 2; }

# the install every command on that machine starts with (then the wheels: DIR/wheels/*.whl)
INSTALL=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")

if [ "${1:-}" = --print ]; then
  DIR=${2:-.gpu_wheels}
  cat <<EOF
[gpu_wheels] on the GPU machine, from the repository root with $DIR carried along:
  install (what gpu_offline.sh starts with; then PYTHONPATH=$SITE:\$PWD and PATH=$SITE/bin:\$PATH):
    ${INSTALL[*]} $DIR/wheels/*.whl
  the GPU check (gpu_check.py --budget-s 420 after the install; give the call 540 s):
    bash benchmarks/gpu_offline.sh check cuda $DIR
  the Multi30k pair, full29k-gpu for 5 epochs each (stopped after 330 s; give the call 420 s):
    bash benchmarks/gpu_offline.sh multi30k cuda $DIR
EOF
  exit 0
fi

[ $# -ge 2 ] && [ $# -le 3 ] || usage
JOB=$1 DEVICE=$2 DIR=$(from_caller "${3:-$REPO/.gpu_wheels}")
case "$JOB" in check|multi30k) ;; *) echo "gpu_offline: unknown job '$JOB' (check or multi30k)" >&2; usage ;; esac
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_offline: unknown device '$DEVICE' (cuda or cpu)" >&2; usage ;; esac
[ -n "${OUT:-}" ] || { echo "gpu_offline: set OUT to the folder that receives the results" >&2; exit 2; }
DIR=$(cd "$DIR" 2>/dev/null && pwd) || { echo "gpu_offline: no folder $DIR: run benchmarks/gpu_wheels.sh first" >&2; exit 2; }
ls "$DIR"/wheels/*.whl >/dev/null 2>&1 || { echo "gpu_offline: no wheels in $DIR/wheels: run benchmarks/gpu_wheels.sh" >&2; exit 2; }
[ -d "$DIR/data/multi30k/raw" ] || { echo "gpu_offline: no corpus in $DIR/data/multi30k: run benchmarks/gpu_wheels.sh" >&2; exit 2; }
OUT=$(from_caller "$OUT") && mkdir -p "$OUT"

run_job() {
  START=$(date +%s)
  say() { echo "[gpu_offline $(( $(date +%s) - START ))s] $*"; }
  say "$JOB on $DEVICE; python: $(command -v "$PY") ($("$PY" -V 2>&1)); wheels and corpus: $DIR"
  if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  fi
  rm -rf "$SITE"
  say "install: ${INSTALL[*]} $DIR/wheels/*.whl"
  "${INSTALL[@]}" "$DIR"/wheels/*.whl
  export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH" RDROP_DATA_DIR="$DIR/data"
  export PYTHONUNBUFFERED=1

  say "imports"
  "$PY" - "$SITE" "$DEVICE" <<'EOF' || { echo "gpu_offline: a module the run needs does not import (above); nothing was run" >&2; exit 1; }
import importlib, os, shutil, sys
site, device = sys.argv[1:]
modules = ["numpy", "torch", "fairseq", "fairseq_cli.preprocess", "fairseq_cli.train", "fairseq_cli.generate",
           "fairseq.data.data_utils_fast", "fairseq.data.token_block_utils_fast", "fairseq.libbleu",
           "hydra", "omegaconf", "bitarray", "sacrebleu", "sentencepiece", "pytest", "matplotlib",
           "rdrop_torch", "rdrop_fairseq", "recipes.common.data"]
versions = {}
for name in modules:
    mod = importlib.import_module(name)
    versions[name] = getattr(mod, "__version__", "")
print(" ".join(f"{k} {v}".strip() for k, v in versions.items()))
import numpy, torch
print(f"numpy {numpy.__version__} from {os.path.dirname(numpy.__file__)}, torch from {os.path.dirname(torch.__file__)}")
for tool in ("fairseq-preprocess", "fairseq-train", "fairseq-generate"):
    if not (shutil.which(tool) or "").startswith(site):
        sys.exit(f"{tool} not found in {site}/bin")
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("torch.cuda.is_available() is False")
    x = torch.randn(256, 256, device="cuda", dtype=torch.float16)
    print(f"cuda: {torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"fp16 matmul ok: {bool(torch.isfinite(x @ x).all())}")
EOF

  rm -rf "$WORK" && mkdir -p "$WORK"
  status=0
  if [ "$JOB" = check ]; then
    budget=()
    if [ "$DEVICE" = cuda ]; then budget=(--budget-s "${BUDGET_S:-420}"); fi
    say "benchmarks/gpu_check.py --device $DEVICE ${budget[*]}"
    "$PY" benchmarks/gpu_check.py --device "$DEVICE" --out "$WORK/check" "${budget[@]}" || status=$?
    for f in report.md results.json; do
      if [ -f "$WORK/check/$f" ]; then cp "$WORK/check/$f" "$OUT/"; fi
    done
    if [ -d "$WORK/check/raw" ]; then tar czf "$OUT/logs.tar.gz" -C "$WORK/check" raw; fi
  else
    if [ "$DEVICE" = cuda ]; then
      args=(--setting full29k-gpu --max-epoch "${MAX_EPOCH:-5}"); limit=${LIMIT_S:-330}
    else
      args=(--setting full29k-tiny); limit=${LIMIT_S:-1800}
    fi
    say "recipes/translation/multi30k/run.py ${args[*]} --device $DEVICE (stopped after $limit s)"
    timeout "$limit" "$PY" recipes/translation/multi30k/run.py "${args[@]}" --device "$DEVICE" \
      --workdir "$WORK/multi30k" || status=$?
    for f in results.json loss_curves.png; do
      if [ -f "$WORK/multi30k/$f" ]; then cp "$WORK/multi30k/$f" "$OUT/"; fi
    done
    if [ -d "$WORK/multi30k" ]; then tar czf "$OUT/multi30k.tar.gz" -C "$WORK" --exclude='*.pt' --exclude=data-bin --exclude=spm \
      --exclude=raw multi30k; fi
  fi
  say "done, exit $status; in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
  return $status
}
# everything also comes back in OUT/console.log
run_job 2>&1 | tee "$OUT/console.log"
exit "${PIPESTATUS[0]}"
