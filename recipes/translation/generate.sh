#!/usr/bin/env bash
# Translate a test set with a checkpoint from train.sh and score it two ways: compound-split
# tokenized BLEU (what the paper reports, as fairseq's scripts/compound_split_bleu.sh) and detokenized
# sacreBLEU (against RAW_REF, the untokenized references, where DATASET/settings.sh names them, else
# against the detokenized lowercased references). iwslt14/ and wmt14/generate.sh call this one.
#   bash recipes/translation/generate.sh DATASET rdrop              # checkpoint_best.pt (best validation BLEU)
#   AVG_LAST=5 bash recipes/translation/generate.sh DATASET rdrop   # average the last 5 epoch checkpoints first
set -euo pipefail

# shellcheck source=load_settings.sh
source "$(dirname "${BASH_SOURCE[0]}")/load_settings.sh" "$@"   # HERE REPO DATASET MODE PYTHON, settings

# ---- paper decoding settings both datasets share (BEAM, LENPEN: settings.sh) ------------------
BATCH_SIZE=${BATCH_SIZE:-128}
GEN_SUBSET=${GEN_SUBSET:-test}
AVG_LAST=${AVG_LAST:-0}                     # 0 = no averaging
# ---- paths -------------------------------------------------------------------------------------
CHECKPOINT=${CHECKPOINT:-$SAVE_DIR/checkpoint_best.pt}
USER_DIR=${USER_DIR:-$REPO/rdrop_fairseq}
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
if [ -n "$RAW_REF" ] && [ "$GEN_SUBSET" = test ] && [ -f "$RAW_REF" ]; then REF_ARGS=(--raw-ref "$RAW_REF"); fi

OUT=$SAVE_DIR/generate-$GEN_SUBSET-$(basename "$CHECKPOINT" .pt).txt
set -x
# shellcheck disable=SC2086  # EXTRA_ARGS is meant to split into options
"$FAIRSEQ_GENERATE" "$DATA_BIN" --user-dir "$USER_DIR" --task translation -s "$SRC" -t "$TGT" \
  --path "$CHECKPOINT" --gen-subset "$GEN_SUBSET" \
  --beam "$BEAM" --lenpen "$LENPEN" --batch-size "$BATCH_SIZE" --remove-bpe \
  "${KEEP_LAST_BATCH[@]}" \
  "${DEVICE_ARGS[@]}" $EXTRA_ARGS > "$OUT"
"$PYTHON" "$REPO/recipes/common/bleu.py" "$OUT" --lang "$TGT" "${REF_ARGS[@]}" | tee "$OUT.bleu"
