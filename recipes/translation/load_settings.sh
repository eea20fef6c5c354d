# Sourced by train.sh and generate.sh with their arguments, DATASET [MODE]: sets HERE, REPO, DATASET,
# MODE (default rdrop) and PYTHON, then loads DATASET/settings.sh and the shared fairseq flags.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DATASET=${1:-}
MODE=${2:-rdrop}
[ -n "$DATASET" ] && [ -f "$HERE/$DATASET/settings.sh" ] || {
  echo "usage: $0 DATASET {rdrop|baseline}: DATASET is a folder beside this script with a settings.sh (got '$DATASET')" >&2; exit 2; }
PYTHON=${PYTHON:-python}
# shellcheck source=iwslt14/settings.sh
source "$HERE/$DATASET/settings.sh"
# shellcheck source=../common/fairseq_flags.sh
source "$REPO/recipes/common/fairseq_flags.sh"   # KEEP_LAST_BATCH: every sentence in every batch
