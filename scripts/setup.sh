#!/usr/bin/env bash
# Creates ./.venv with torch (CPU), fairseq and this plugin (editable), plus the
# test and recipe extras. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# PIP_CONSTRAINT (not -c) so the pin reaches fairseq-fixed's isolated build env.
export PIP_CONSTRAINT="$PWD/constraints.txt"
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,recipes]"
.venv/bin/python -c "import torch, fairseq, rdrop_fairseq; print('setup ok: torch', torch.__version__, '| fairseq', fairseq.__version__)"
