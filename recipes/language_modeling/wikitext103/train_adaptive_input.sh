#!/usr/bin/env bash
# WikiText-103, adaptive-input Transformer LM (transformer_lm_wiki103, Baevski & Auli 2019) with
# R-Drop: fairseq's examples/language_model/README.adaptive_inputs.md schedule (NAG, cosine).  GPU.
#
#   bash recipes/language_modeling/wikitext103/train_adaptive_input.sh                 # R-Drop, alpha 1
#   ALPHA=0 bash recipes/language_modeling/wikitext103/train_adaptive_input.sh         # baseline (adaptive_loss)
#   EXACT_KL=1 bash recipes/language_modeling/wikitext103/train_adaptive_input.sh      # full-vocabulary KL
#
# Criterion: adaptive_loss_with_rdrop (this plugin) keeps adaptive softmax's savings; its KL covers
# the head and, for each row, only the tail that holds the target (like the official
# reg_adaptive_loss).  EXACT_KL=1 uses label_smoothed_cross_entropy_with_rdrop instead, whose KL
# goes through get_normalized_probs, i.e. the full 267k-word distribution of both copies:
# ~ 2 x 3072 x 267k floats per GPU-batch, so lower --max-tokens there.
# Batch: fairseq's README runs 8 GPUs x --max-tokens 3072 x --update-freq 3; UPDATE_FREQ defaults
# to the same tokens per update on the visible GPUs (1 GPU -> 24).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="${WORK:-$REPO/work/wikitext103}"
ALPHA="${ALPHA:-1.0}"
SAVE_DIR="${SAVE_DIR:-$WORK/transformer_lm_wiki103-alpha$ALPHA}"
NUM_GPUS="${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
[[ "$NUM_GPUS" -ge 1 ]] || { echo "train_adaptive_input.sh: no GPU found (nvidia-smi -L); --fp16 needs one" >&2; exit 2; }
UPDATE_FREQ="${UPDATE_FREQ:-$(( 24 / NUM_GPUS ))}"   # 8 GPUs x 3
[[ -f "$WORK/bin/dict.txt" ]] || { echo "train_adaptive_input.sh: run prepare.sh first ($WORK/bin)" >&2; exit 2; }

if [[ "$ALPHA" == "0" ]]; then
  CRITERION=(--criterion adaptive_loss)
elif [[ "${EXACT_KL:-0}" == "1" ]]; then
  CRITERION=(--criterion label_smoothed_cross_entropy_with_rdrop --label-smoothing 0
             --rdrop-alpha "$ALPHA" --rdrop-impl reference)
else
  CRITERION=(--criterion adaptive_loss_with_rdrop --rdrop-alpha "$ALPHA")
fi

mkdir -p "$SAVE_DIR"
fairseq-train "$WORK/bin" --user-dir "$REPO/rdrop_fairseq" \
  --task language_modeling --tokens-per-sample 3072 --sample-break-mode none \
  --arch transformer_lm_wiki103 \
  "${CRITERION[@]}" \
  --max-update 286000 --lr 1.0 --t-mult 2 --lr-period-updates 270000 --lr-scheduler cosine \
  --lr-shrink 0.75 --warmup-updates 16000 --warmup-init-lr 1e-07 --stop-min-lr 1e-09 \
  --optimizer nag --min-lr 0.0001 --clip-norm 0.1 \
  --max-tokens 3072 --update-freq "$UPDATE_FREQ" --seed 1 \
  --skip-invalid-size-inputs-valid-test --ddp-backend legacy_ddp --fp16 \
  --save-dir "$SAVE_DIR" --log-format json 2>&1 | tee -a "$SAVE_DIR/train.log"
