#!/usr/bin/env bash
# Prepares what travels to a GPU machine with no package registry whose Python 3.12 image has
# torch 2.11 (CUDA), numpy 2, sacrebleu and sentencepiece but not fairseq (its list:
# benchmarks/gpu_image_packages.txt). Needs a registry here (PyPI), nothing else.
#
#   bash benchmarks/gpu_wheels.sh [DIR]   # DIR defaults to the repository's .gpu_wheels (git-ignored)
#
# DIR/wheels/  the CPython 3.12 manylinux x86-64 wheels of every distribution fairseq and the
#              plugin need that the image lacks, pinned, fetched one by one with --no-deps so that
#              nothing pulls torch or CUDA (what each one needs is checked by gpu_image.py)
# DIR/data/    the Multi30k corpus (multi30k/raw and multi30k/tok), from RDROP_DATA_DIR or
#              ../shared/data, as the GPU check and the recipe read it
# It checks that DIR and the working tree together stay under the 64 MiB a call may carry,
# then prints the install line and the commands that run on the GPU machine
# (benchmarks/gpu_offline.sh; docs/performance.md, "The GPU check").
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")/.."
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
DIR=.gpu_wheels
if [ $# -ge 1 ]; then DIR=$(realpath -m "$(from_caller "$1")"); fi
PY=${PYTHON:-python3}
LIMIT_MIB=64    # what one call may carry: the working tree plus the carried paths
HEADROOM_MIB=4  # for files the tree gains before the call

# name==version and why each is needed (fairseq-fixed's Requires-Dist minus what the image holds)
PINS=(
  fairseq-fixed==0.12.3.1          # fairseq 0.12 that installs on Python >= 3.11 (cp312 wheel)
  hydra-core==1.3.2                # fairseq's configuration (pinned by fairseq-fixed)
  omegaconf==2.3.0                 # likewise
  bitarray==3.12.3                 # fairseq.data imports fairseq.data.huffman
  cffi==2.1.1                      # in fairseq-fixed's requirements
  pycparser==3.12                  # cffi's
  sacremoses==0.2.0                # the Multi30k recipe's detokenised scores (its regex, click, joblib
                                   # and tqdm are in the image)
)
# No numpy < 2, although the plugin pins it elsewhere: ahead of the image's numpy 2 on PYTHONPATH
# it breaks the image's scipy, which fairseq imports at start (fairseq.tasks imports scikit-learn).
# The run works on numpy 2: fairseq's two uses of np.compat (--num-batch-buckets, and
# --sample-break-mode eos) are off its path, and fairseq-fixed's compiled parts are built against
# numpy 2 (benchmarks/gpu_dry_run.sh runs it all on numpy 2 on the CPU).
# omegaconf's grammar runtime: an sdist only on PyPI, built here into a pure-Python wheel
SDIST_PINS=(antlr4-python3-runtime==4.9.3)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
  manylinux2014_x86_64 manylinux1_x86_64)

case "$DIR" in /*) ABS=$DIR ;; *) ABS=$PWD/$DIR ;; esac
if [ "${ABS#"$PWD"/}" != "$ABS" ]; then DIR=${ABS#"$PWD"/}; fi  # inside the repository: named from its root
if [ "$ABS" = "$PWD" ] || [ "$ABS" = / ]; then echo "gpu_wheels: DIR=$DIR would replace the repository" >&2; exit 2; fi
# inside the repository DIR must be git-ignored, or it would travel (and be committed) as part of the tree
if [ "${ABS#"$PWD"/}" != "$ABS" ] && ! git check-ignore -q "$ABS/"; then
  echo "gpu_wheels: $DIR is inside the repository but not git-ignored; add it to .gitignore" >&2; exit 2
fi
DATA=${RDROP_DATA_DIR:+$(from_caller "$RDROP_DATA_DIR")}
DATA=${DATA:-../shared/data}
if [ ! -d "$DATA/multi30k/raw" ] || [ ! -d "$DATA/multi30k/tok" ]; then
  echo "gpu_wheels: no Multi30k corpus at $DATA/multi30k/{raw,tok}: set RDROP_DATA_DIR" >&2; exit 2
fi

rm -rf "$ABS/wheels" "$ABS/data"  # one version of each wheel: a stale second one stops the install
mkdir -p "$ABS/wheels" "$ABS/data/multi30k"
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
echo "[gpu_wheels] downloading ${#PINS[@]} wheels for CPython 3.12 manylinux x86-64 into $DIR/wheels"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none "${platform_args[@]}" -d "$ABS/wheels" "${PINS[@]}" 2>&1 \
  | grep -v -e "^WARNING: Location" -e "^\[notice\]" || true
echo "[gpu_wheels] building pure-Python wheels of ${SDIST_PINS[*]}"
"$PY" -m pip wheel -q --no-deps -w "$ABS/wheels" "${SDIST_PINS[@]}" 2>&1 \
  | grep -v -e "^WARNING: Location" -e "^\[notice\]" || true
"$PY" benchmarks/gpu_image.py wheels "$ABS/wheels"
cp -r "$DATA/multi30k/raw" "$DATA/multi30k/tok" "$ABS/data/multi30k/"

# the tree that travels: tracked files and untracked ones git does not ignore
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
  | awk '{s += $1} END {print s + 0}')
carried_bytes=$(du -sb "$ABS" | cut -f1)
total_mib=$(( (tree_bytes + carried_bytes) / 1048576 + 1 ))
echo "[gpu_wheels] $DIR: $(( carried_bytes / 1048576 )) MiB; with the working tree ($(( tree_bytes / 1048576 )) MiB) about $total_mib MiB of the $LIMIT_MIB MiB a call carries"
if [ "$total_mib" -gt $(( LIMIT_MIB - HEADROOM_MIB )) ]; then
  echo "gpu_wheels: $total_mib MiB leaves less than $HEADROOM_MIB MiB of the $LIMIT_MIB MiB limit" >&2; exit 1
fi
# the lines for the GPU machine, whose interpreter is python3 (not the one that downloaded here)
PYTHON=python3 bash benchmarks/gpu_offline.sh --print "$DIR"
