#!/usr/bin/env bash
# Sets up ./.venv and runs the Multi30k De->En quickstart: baseline vs R-Drop, sacreBLEU, plot.
# SETTING=quick (default, ~20 min on 2 CPU cores) or SETTING=full. Data come from
# RDROP_DATA_DIR when set (a folder laid out like shared/data), else are downloaded (sha256-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python recipes/translation/multi30k/run.py --setting "${SETTING:-quick}" "$@"
