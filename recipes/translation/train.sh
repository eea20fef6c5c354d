#!/usr/bin/env bash
# fairseq-train with the R-Drop paper's translation protocol (Liang et al. 2021; official run_train.sh),
# for a dataset whose folder holds a settings.sh with what differs (hyperparameters, language pair,
# paths): iwslt14/ and wmt14/, whose train.sh call this one.
#   bash recipes/translation/train.sh DATASET rdrop      # label_smoothed_cross_entropy_with_rdrop, alpha 5
#   bash recipes/translation/train.sh DATASET baseline   # label_smoothed_cross_entropy, same everything else
# Every setting here and in DATASET/settings.sh can be overridden from the environment.
set -euo pipefail

# shellcheck source=load_settings.sh
source "$(dirname "${BASH_SOURCE[0]}")/load_settings.sh" "$@"   # HERE REPO DATASET MODE PYTHON, settings

# ---- paper hyperparameters both datasets share ------------------------------------------------
ADAM_BETAS=${ADAM_BETAS:-"(0.9,0.98)"}
WARMUP_INIT_LR=${WARMUP_INIT_LR:-1e-7}
LABEL_SMOOTHING=${LABEL_SMOOTHING:-0.1}
MAX_TOKENS=${MAX_TOKENS:-4096}              # per GPU and per update; R-Drop doubles it internally
RDROP_ALPHA=${RDROP_ALPHA:-5}
KEEP_LAST_EPOCHS=${KEEP_LAST_EPOCHS:-10}    # for generate.sh AVG_LAST=N; all epochs would fill a disk
# BATCHES_PER_UPDATE (settings.sh): the paper's update spans that many MAX_TOKENS batches, whatever
# the GPU count: UPDATE_FREQ = BATCHES_PER_UPDATE / n_gpus (at least 1). Unset: no --update-freq.
UPDATE_FREQ_ARGS=()
if [ -n "${BATCHES_PER_UPDATE:-}" ]; then
  N_GPUS=${N_GPUS:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
  UPDATE_FREQ=${UPDATE_FREQ:-$(( BATCHES_PER_UPDATE / N_GPUS > 0 ? BATCHES_PER_UPDATE / N_GPUS : 1 ))}
  UPDATE_FREQ_ARGS=(--update-freq "$UPDATE_FREQ")
fi
# ---- paths and machine -------------------------------------------------------------------------
USER_DIR=${USER_DIR:-$REPO/rdrop_fairseq}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}
EXTRA_ARGS=${EXTRA_ARGS:-}                  # appended last, so it can override anything above

case "$MODE" in
  rdrop)    CRITERION=(--criterion label_smoothed_cross_entropy_with_rdrop --rdrop-alpha "$RDROP_ALPHA") ;;
  baseline) CRITERION=(--criterion label_smoothed_cross_entropy) ;;
  *) echo "usage: $0 $DATASET {rdrop|baseline}  (got '$MODE')" >&2; exit 2 ;;
esac
[ -f "$DATA_BIN/dict.$SRC.txt" ] || { echo "DATA_BIN=$DATA_BIN has no dict.$SRC.txt: run prepare.py first" >&2; exit 2; }

# fp16 needs a GPU; on CPU fairseq must be told --cpu and trains in fp32 (smoke tests only).
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE_ARGS=(--fp16)
else
  DEVICE_ARGS=(--cpu)
fi
if [ -n "${BATCHES_PER_UPDATE:-}" ]; then
  echo "[$DATASET] N_GPUS=$N_GPUS x $MAX_TOKENS tokens x update-freq $UPDATE_FREQ per update"
fi

mkdir -p "$SAVE_DIR"
set -x
# shellcheck disable=SC2086  # EXTRA_ARGS is meant to split into options
"$FAIRSEQ_TRAIN" "$DATA_BIN" \
  --user-dir "$USER_DIR" \
  --task translation -s "$SRC" -t "$TGT" \
  --arch "$ARCH" --share-all-embeddings \
  --optimizer adam --adam-betas "$ADAM_BETAS" --lr "$LR" \
  --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP_UPDATES" --warmup-init-lr "$WARMUP_INIT_LR" \
  --weight-decay "$WEIGHT_DECAY" --dropout "$DROPOUT" \
  "${CRITERION[@]}" --label-smoothing "$LABEL_SMOOTHING" \
  "${KEEP_LAST_BATCH[@]}" \
  --max-tokens "$MAX_TOKENS" "${UPDATE_FREQ_ARGS[@]}" --max-update "$MAX_UPDATE" --seed "$SEED" \
  --eval-bleu --eval-bleu-args "$EVAL_BLEU_ARGS" --eval-bleu-detok moses --eval-bleu-remove-bpe \
  --best-checkpoint-metric bleu --maximize-best-checkpoint-metric \
  --keep-last-epochs "$KEEP_LAST_EPOCHS" \
  --save-dir "$SAVE_DIR" --log-format simple --log-interval 100 --no-progress-bar \
  "${DEVICE_ARGS[@]}" $EXTRA_ARGS 2>&1 | tee -a "$SAVE_DIR/train.log"
