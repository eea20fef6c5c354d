#!/usr/bin/env bash
# Sets up ./.venv and runs the Multi30k De->En quickstart: baseline vs R-Drop, sacreBLEU, plot.
# SETTING=main (default: 1,000 pairs, a 3+3 d=256 model that over-fits them, 26 epochs) or another
# run.py setting, e.g. SETTING=quick (4,000 pairs, 30 epochs of a small model);
# extra arguments go to run.py (e.g. --seeds 1,2,3). Data come from
# RDROP_DATA_DIR when set (a folder laid out like shared/data), else are downloaded (sha256-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python recipes/translation/multi30k/run.py --setting "${SETTING:-main}" "$@"
