#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh) and runs the whole test suite (about 12 min on 2 cores).
# VENV and PYTHON choose another environment, as for setup.sh, e.g. the Python 3.10 +
# fairseq 0.12.2 one: PYTHON=python3.10 VENV=.venv310 bash scripts/test.sh
# Data-dependent tests read RDROP_DATA_DIR, defaulting to ../shared/data beside the repo; without
# either they are skipped with a message (RDROP_DATA_DIR stays unset then, never set to "").
set -euo pipefail
if [ -n "${RDROP_DATA_DIR:-}" ]; then  # absolute, as given from the caller's directory
  export RDROP_DATA_DIR="$(cd "$RDROP_DATA_DIR" && pwd)"
fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${RDROP_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export RDROP_DATA_DIR="$(cd ../shared/data && pwd)"
fi
# one thread per process: the suite runs many small fairseq processes on 2 cores
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# arguments: test files or pytest options (pytest.ini: testpaths = tests when none is named)
exec "${VENV:-.venv}/bin/python" -m pytest -q -p no:cacheprovider "$@"
