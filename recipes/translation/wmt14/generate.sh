#!/usr/bin/env bash
# Translate newstest2014 En->De with a checkpoint from train.sh and score it two ways:
# compound-split tokenized BLEU (the paper's number, as fairseq's scripts/compound_split_bleu.sh) and
# detokenized sacreBLEU against the untokenized newstest2014 references (test.raw.de from prepare.py).
#   bash generate.sh rdrop               # checkpoint_best.pt
#   AVG_LAST=5 bash generate.sh rdrop    # average the last 5 epoch checkpoints first
set -euo pipefail

MODE=${1:-rdrop}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)

# ---- paper decoding settings -------------------------------------------------------------------
BEAM=${BEAM:-4}
LENPEN=${LENPEN:-0.6}
BATCH_SIZE=${BATCH_SIZE:-128}
GEN_SUBSET=${GEN_SUBSET:-test}
AVG_LAST=${AVG_LAST:-0}
# ---- paths -------------------------------------------------------------------------------------
DATA_BIN=${DATA_BIN:-$REPO/work/wmt14/data-bin}
RAW_REF=${RAW_REF:-$REPO/work/wmt14/wmt14_en_de/test.raw.de}   # only used for GEN_SUBSET=test
SAVE_DIR=${SAVE_DIR:-$REPO/runs/wmt14/$MODE}
CHECKPOINT=${CHECKPOINT:-$SAVE_DIR/checkpoint_best.pt}
USER_DIR=${USER_DIR:-$REPO/rdrop_fairseq}
PYTHON=${PYTHON:-python}
FAIRSEQ_GENERATE=${FAIRSEQ_GENERATE:-fairseq-generate}
EXTRA_ARGS=${EXTRA_ARGS:-}

if [ "$AVG_LAST" -gt 0 ]; then
  CHECKPOINT=$SAVE_DIR/checkpoint_avg$AVG_LAST.pt
  "$PYTHON" "$REPO/recipes/common/average_checkpoints.py" --inputs "$SAVE_DIR" \
    --num-epoch-checkpoints "$AVG_LAST" --output "$CHECKPOINT"
fi
[ -f "$CHECKPOINT" ] || { echo "CHECKPOINT=$CHECKPOINT does not exist: train first (train.sh $MODE)" >&2; exit 2; }
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE_ARGS=()
else
  DEVICE_ARGS=(--cpu)
fi
REF_ARGS=()
if [ "$GEN_SUBSET" = test ] && [ -f "$RAW_REF" ]; then REF_ARGS=(--raw-ref "$RAW_REF"); fi

OUT=$SAVE_DIR/generate-$GEN_SUBSET-$(basename "$CHECKPOINT" .pt).txt
set -x
# shellcheck disable=SC2086
# --required-batch-size-multiple 1: with the default 8, fairseq-fixed 0.12.3.1 drops the
# last (n mod 8) test sentences (checked: 12 sentences give 8 hypotheses).
"$FAIRSEQ_GENERATE" "$DATA_BIN" --user-dir "$USER_DIR" --task translation -s en -t de \
  --path "$CHECKPOINT" --gen-subset "$GEN_SUBSET" \
  --beam "$BEAM" --lenpen "$LENPEN" --batch-size "$BATCH_SIZE" --remove-bpe \
  --required-batch-size-multiple 1 \
  "${DEVICE_ARGS[@]}" $EXTRA_ARGS > "$OUT"
"$PYTHON" "$REPO/recipes/common/bleu.py" "$OUT" --lang de "${REF_ARGS[@]}" | tee "$OUT.bleu"
