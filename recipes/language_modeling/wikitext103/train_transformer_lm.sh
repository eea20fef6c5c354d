#!/usr/bin/env bash
# WikiText-103, basic Transformer LM (transformer_lm_gpt: 12 layers, d=768) with R-Drop, the R-Drop
# paper's protocol (sec. 3.4; dropreg/R-Drop fairseq_src/examples/language_model_rdrop).  GPU, fp16.
#
#   bash recipes/language_modeling/wikitext103/train_transformer_lm.sh            # R-Drop, alpha 1
#   ALPHA=0 bash recipes/language_modeling/wikitext103/train_transformer_lm.sh    # baseline
#
# Batch: the paper uses 8 GPUs x --max-tokens 2048 x --update-freq 16 = 262,144 tokens per update;
# UPDATE_FREQ defaults to the same on the visible GPUs (1 GPU -> 128).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="${WORK:-$REPO/work/wikitext103}"
ALPHA="${ALPHA:-1.0}"
SAVE_DIR="${SAVE_DIR:-$WORK/transformer_lm_gpt-alpha$ALPHA}"
NUM_GPUS="${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
[[ "$NUM_GPUS" -ge 1 ]] || { echo "train_transformer_lm.sh: no GPU found (nvidia-smi -L); --fp16 needs one" >&2; exit 2; }
UPDATE_FREQ="${UPDATE_FREQ:-$(( 128 / NUM_GPUS ))}"   # 8 GPUs x 16
[[ -f "$WORK/bin/dict.txt" ]] || { echo "train_transformer_lm.sh: run prepare.sh first ($WORK/bin)" >&2; exit 2; }

if [[ "$ALPHA" == "0" ]]; then
  CRITERION=(--criterion label_smoothed_cross_entropy --label-smoothing 0)
else
  CRITERION=(--criterion label_smoothed_cross_entropy_with_rdrop --label-smoothing 0 --rdrop-alpha "$ALPHA")
fi

mkdir -p "$SAVE_DIR"
fairseq-train "$WORK/bin" --user-dir "$REPO/rdrop_fairseq" \
  --task language_modeling --tokens-per-sample 512 --sample-break-mode none \
  --arch transformer_lm_gpt --share-decoder-input-output-embed --dropout 0.1 \
  "${CRITERION[@]}" \
  --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay 0.01 --clip-norm 0.0 \
  --lr 0.0005 --lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-07 \
  --max-tokens 2048 --update-freq "$UPDATE_FREQ" --max-update 50000 \
  --fp16 --seed 1 --skip-invalid-size-inputs-valid-test \
  --save-dir "$SAVE_DIR" --log-format json 2>&1 | tee -a "$SAVE_DIR/train.log"
