#!/usr/bin/env bash
# WMT14 En->De, the R-Drop paper's protocol (Liang et al. 2021, Table 2: R-Drop 30.91 BLEU).
#   bash train.sh rdrop      # label_smoothed_cross_entropy_with_rdrop, alpha 5
#   bash train.sh baseline   # label_smoothed_cross_entropy, same everything else
# Batch: 4096 tokens x UPDATE_FREQ per GPU. The default keeps 4096 x 16 tokens per update whatever the
# GPU count: UPDATE_FREQ = 16 / n_gpus (16 on 1 GPU, 2 on 8 GPUs). Any setting can be overridden.
set -euo pipefail

MODE=${1:-rdrop}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PYTHON=${PYTHON:-python}

# ---- paper hyperparameters -------------------------------------------------------------------
ARCH=${ARCH:-transformer_vaswani_wmt_en_de_big}
LR=${LR:-1e-3}
ADAM_BETAS=${ADAM_BETAS:-"(0.9,0.98)"}
WARMUP_UPDATES=${WARMUP_UPDATES:-6000}
WARMUP_INIT_LR=${WARMUP_INIT_LR:-1e-7}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.0}
DROPOUT=${DROPOUT:-0.1}
LABEL_SMOOTHING=${LABEL_SMOOTHING:-0.1}
MAX_TOKENS=${MAX_TOKENS:-4096}
RDROP_ALPHA=${RDROP_ALPHA:-5}
# The paper's update count for WMT14 is not in the material this recipe was written from; 300k is
# the IWSLT script's figure. Watch validation BLEU and set MAX_UPDATE to your budget.
MAX_UPDATE=${MAX_UPDATE:-300000}
SEED=${SEED:-1}
EVAL_BLEU_ARGS=${EVAL_BLEU_ARGS:-'{"beam": 4, "lenpen": 0.6, "max_len_a": 1.2, "max_len_b": 10}'}
KEEP_LAST_EPOCHS=${KEEP_LAST_EPOCHS:-10}    # generate.sh AVG_LAST=N averages the last N of these
N_GPUS=${N_GPUS:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
UPDATE_FREQ=${UPDATE_FREQ:-$(( 16 / N_GPUS > 0 ? 16 / N_GPUS : 1 ))}
# ---- paths -------------------------------------------------------------------------------------
DATA_BIN=${DATA_BIN:-$REPO/work/wmt14/data-bin}
SAVE_DIR=${SAVE_DIR:-$REPO/runs/wmt14/$MODE}
USER_DIR=${USER_DIR:-$REPO/rdrop_fairseq}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}
EXTRA_ARGS=${EXTRA_ARGS:-}                  # appended last, so it can override anything above

case "$MODE" in
  rdrop)    CRITERION=(--criterion label_smoothed_cross_entropy_with_rdrop --rdrop-alpha "$RDROP_ALPHA") ;;
  baseline) CRITERION=(--criterion label_smoothed_cross_entropy) ;;
  *) echo "usage: $0 {rdrop|baseline}  (got '$MODE')" >&2; exit 2 ;;
esac
[ -f "$DATA_BIN/dict.en.txt" ] || { echo "DATA_BIN=$DATA_BIN has no dict.en.txt: run prepare.py first" >&2; exit 2; }
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE_ARGS=(--fp16)
else
  DEVICE_ARGS=(--cpu)                       # fp16 needs a GPU: CPU runs (smoke tests only) are fp32
fi
echo "[wmt14] N_GPUS=$N_GPUS x $MAX_TOKENS tokens x update-freq $UPDATE_FREQ per update"

mkdir -p "$SAVE_DIR"
set -x
# shellcheck disable=SC2086
# --required-batch-size-multiple 1: with the default 8, fairseq-fixed 0.12.3.1 drops the
# last (n mod 8) sentences of every epoch, so validation BLEU would skip a few.
"$FAIRSEQ_TRAIN" "$DATA_BIN" \
  --user-dir "$USER_DIR" \
  --task translation -s en -t de \
  --arch "$ARCH" --share-all-embeddings \
  --optimizer adam --adam-betas "$ADAM_BETAS" --lr "$LR" \
  --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP_UPDATES" --warmup-init-lr "$WARMUP_INIT_LR" \
  --weight-decay "$WEIGHT_DECAY" --dropout "$DROPOUT" \
  "${CRITERION[@]}" --label-smoothing "$LABEL_SMOOTHING" \
  --required-batch-size-multiple 1 \
  --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-update "$MAX_UPDATE" --seed "$SEED" \
  --eval-bleu --eval-bleu-args "$EVAL_BLEU_ARGS" --eval-bleu-detok moses --eval-bleu-remove-bpe \
  --best-checkpoint-metric bleu --maximize-best-checkpoint-metric \
  --keep-last-epochs "$KEEP_LAST_EPOCHS" \
  --save-dir "$SAVE_DIR" --log-format simple --log-interval 100 --no-progress-bar \
  "${DEVICE_ARGS[@]}" $EXTRA_ARGS 2>&1 | tee -a "$SAVE_DIR/train.log"
