#!/usr/bin/env bash
# IWSLT14 De->En, the R-Drop paper's protocol (Liang et al. 2021, Table 1; official run_train.sh).
#   bash train.sh rdrop      # label_smoothed_cross_entropy_with_rdrop, alpha 5   (paper: 37.25 BLEU)
#   bash train.sh baseline   # label_smoothed_cross_entropy, same everything else (paper: 34.64 BLEU)
# Every setting below can be overridden from the environment, e.g. the CPU smoke run in README.md:
#   MAX_UPDATE=20 ARCH=transformer EXTRA_ARGS="--encoder-layers 1 ..." bash train.sh rdrop
set -euo pipefail

MODE=${1:-rdrop}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)

# ---- paper hyperparameters -------------------------------------------------------------------
ARCH=${ARCH:-transformer_iwslt_de_en}       # 6+6 layers, d=512, ffn 1024, 4 heads
LR=${LR:-5e-4}
ADAM_BETAS=${ADAM_BETAS:-"(0.9,0.98)"}
WARMUP_UPDATES=${WARMUP_UPDATES:-4000}
WARMUP_INIT_LR=${WARMUP_INIT_LR:-1e-7}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.0001}
DROPOUT=${DROPOUT:-0.3}
LABEL_SMOOTHING=${LABEL_SMOOTHING:-0.1}
MAX_TOKENS=${MAX_TOKENS:-4096}              # per GPU and per update; R-Drop doubles it internally
RDROP_ALPHA=${RDROP_ALPHA:-5}
MAX_UPDATE=${MAX_UPDATE:-300000}
SEED=${SEED:-64}                            # the official script's seed
EVAL_BLEU_ARGS=${EVAL_BLEU_ARGS:-'{"beam": 5, "max_len_a": 1.2, "max_len_b": 10}'}
KEEP_LAST_EPOCHS=${KEEP_LAST_EPOCHS:-10}    # for generate.sh AVG_LAST=N; all epochs would fill a disk
# ---- paths and machine -------------------------------------------------------------------------
DATA_BIN=${DATA_BIN:-$REPO/work/iwslt14/data-bin}
SAVE_DIR=${SAVE_DIR:-$REPO/runs/iwslt14/$MODE}
USER_DIR=${USER_DIR:-$REPO/rdrop_fairseq}
PYTHON=${PYTHON:-python}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}
EXTRA_ARGS=${EXTRA_ARGS:-}                  # appended last, so it can override anything above

case "$MODE" in
  rdrop)    CRITERION=(--criterion label_smoothed_cross_entropy_with_rdrop --rdrop-alpha "$RDROP_ALPHA") ;;
  baseline) CRITERION=(--criterion label_smoothed_cross_entropy) ;;
  *) echo "usage: $0 {rdrop|baseline}  (got '$MODE')" >&2; exit 2 ;;
esac
[ -f "$DATA_BIN/dict.de.txt" ] || { echo "DATA_BIN=$DATA_BIN has no dict.de.txt: run prepare.py first" >&2; exit 2; }

# fp16 needs a GPU; on CPU fairseq must be told --cpu and trains in fp32.
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE_ARGS=(--fp16)
else
  DEVICE_ARGS=(--cpu)
fi

mkdir -p "$SAVE_DIR"
set -x
# shellcheck disable=SC2086  # EXTRA_ARGS is meant to split into options
# --required-batch-size-multiple 1: with the default 8, fairseq-fixed 0.12.3.1 drops the
# last (n mod 8) sentences of every epoch, so validation BLEU would skip a few.
"$FAIRSEQ_TRAIN" "$DATA_BIN" \
  --user-dir "$USER_DIR" \
  --task translation -s de -t en \
  --arch "$ARCH" --share-all-embeddings \
  --optimizer adam --adam-betas "$ADAM_BETAS" --lr "$LR" \
  --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP_UPDATES" --warmup-init-lr "$WARMUP_INIT_LR" \
  --weight-decay "$WEIGHT_DECAY" --dropout "$DROPOUT" \
  "${CRITERION[@]}" --label-smoothing "$LABEL_SMOOTHING" \
  --required-batch-size-multiple 1 \
  --max-tokens "$MAX_TOKENS" --max-update "$MAX_UPDATE" --seed "$SEED" \
  --eval-bleu --eval-bleu-args "$EVAL_BLEU_ARGS" --eval-bleu-detok moses --eval-bleu-remove-bpe \
  --best-checkpoint-metric bleu --maximize-best-checkpoint-metric \
  --keep-last-epochs "$KEEP_LAST_EPOCHS" \
  --save-dir "$SAVE_DIR" --log-format simple --log-interval 100 --no-progress-bar \
  "${DEVICE_ARGS[@]}" $EXTRA_ARGS 2>&1 | tee -a "$SAVE_DIR/train.log"
