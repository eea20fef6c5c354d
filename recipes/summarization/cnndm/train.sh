#!/usr/bin/env bash
# Fine-tune BART-large on CNN/DailyMail with R-Drop: the R-Drop paper's protocol (Liang et al.
# 2021, sec. 3.3 and dropreg/R-Drop's fairseq_src/examples/summeration_rdrop) on top of fairseq's
# examples/bart/README.summarization.md.  Needs a GPU (fp16) and `prepare.py` output.
#
#   BART_SHA256=<sha256 of bart.large.tar.gz> bash recipes/summarization/cnndm/train.sh
#   ALPHA=0 ... bash recipes/summarization/cnndm/train.sh        # the baseline (plain LS-CE)
#
# Batch: the paper uses 4 GPUs x --max-tokens 1024 x --update-freq 16 = 65,536 tokens per update.
# UPDATE_FREQ defaults to the same number of tokens on however many GPUs are visible
# (1 GPU -> 64, 4 GPUs -> 16, 8 GPUs -> 8).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
# shellcheck source=../../common/fairseq_flags.sh
source "$REPO/recipes/common/fairseq_flags.sh"   # KEEP_LAST_BATCH: every sentence in every batch
WORK="${WORK:-$REPO/work/cnndm}"
DATA="${DATA:-$WORK/bin}"
ALPHA="${ALPHA:-0.7}"                  # R-Drop weight for CNN/DM in the paper
SAVE_DIR="${SAVE_DIR:-$WORK/checkpoints-alpha$ALPHA}"
TOTAL_NUM_UPDATES=20000
WARMUP_UPDATES=500
LR=3e-05
MAX_TOKENS=1024
NUM_GPUS="${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
if [[ "$NUM_GPUS" -lt 1 ]]; then
  echo "train.sh: no GPU found (nvidia-smi -L); BART-large fine-tuning with --fp16 needs one" >&2
  exit 2
fi
UPDATE_FREQ="${UPDATE_FREQ:-$(( 64 / NUM_GPUS ))}"   # 4 x 16 = 64 GPU-batches per update
[[ -f "$DATA/dict.source.txt" ]] || { echo "train.sh: $DATA has no binarised data; run prepare.py" >&2; exit 2; }

# The public pre-trained bart.large (fairseq's examples/bart/README.md).  It has no published
# checksum: verify one copy yourself and pass its sha256 in BART_SHA256.
BART_URL=https://dl.fbaipublicfiles.com/fairseq/models/bart.large.tar.gz
BART_PATH="${BART_PATH:-$WORK/bart.large/model.pt}"
if [[ ! -f "$BART_PATH" ]]; then
  : "${BART_SHA256:?set BART_SHA256 to the sha256 of bart.large.tar.gz (none is published), or BART_PATH to an extracted model.pt}"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" python - "$BART_URL" "$WORK/bart.large.tar.gz" "$BART_SHA256" <<'PY'
import sys
from recipes.common.data import download
download(*sys.argv[1:])
PY
  tar -xzf "$WORK/bart.large.tar.gz" -C "$WORK"
fi

if [[ "$ALPHA" == "0" ]]; then
  CRITERION=(--criterion label_smoothed_cross_entropy --label-smoothing 0.1)
else
  CRITERION=(--criterion label_smoothed_cross_entropy_with_rdrop --label-smoothing 0.1 --rdrop-alpha "$ALPHA")
fi

mkdir -p "$SAVE_DIR"
fairseq-train "$DATA" --user-dir "$REPO/rdrop_fairseq" \
    --restore-file "$BART_PATH" \
    --reset-optimizer --reset-dataloader --reset-meters \
    --task translation --source-lang source --target-lang target \
    --truncate-source --max-tokens "$MAX_TOKENS" "${KEEP_LAST_BATCH[@]}" \
    --arch bart_large --layernorm-embedding \
    --share-all-embeddings --share-decoder-input-output-embed \
    "${CRITERION[@]}" \
    --dropout 0.1 --attention-dropout 0.1 \
    --weight-decay 0.01 --optimizer adam --adam-betas "(0.9, 0.999)" --adam-eps 1e-08 \
    --clip-norm 0.1 \
    --lr-scheduler polynomial_decay --lr "$LR" \
    --total-num-update "$TOTAL_NUM_UPDATES" --max-update "$TOTAL_NUM_UPDATES" \
    --warmup-updates "$WARMUP_UPDATES" \
    --fp16 --update-freq "$UPDATE_FREQ" \
    --skip-invalid-size-inputs-valid-test \
    --find-unused-parameters \
    --save-dir "$SAVE_DIR" --log-format json 2>&1 | tee -a "$SAVE_DIR/train.log"
