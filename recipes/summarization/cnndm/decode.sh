#!/usr/bin/env bash
# Summarise the CNN/DM test set with a fine-tuned checkpoint and score it with ROUGE.
# Decoding settings are BART's for CNN/DM, also used by the R-Drop paper's run_inference.py:
# beam 4, length penalty 2.0, max_len_b 140, min_len 55, no repeated trigrams.
#
#   CHECKPOINT=work/cnndm/checkpoints-alpha0.7/checkpoint_best.pt bash recipes/summarization/cnndm/decode.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
# shellcheck source=../../common/fairseq_flags.sh
source "$REPO/recipes/common/fairseq_flags.sh"   # KEEP_LAST_BATCH: every sentence in every batch
WORK="${WORK:-$REPO/work/cnndm}"
CHECKPOINT="${CHECKPOINT:?set CHECKPOINT to a checkpoint_best.pt written by train.sh}"
OUT="${OUT:-$(dirname "$CHECKPOINT")/test}"
mkdir -p "$OUT"

fairseq-generate "$WORK/bin" --user-dir "$REPO/rdrop_fairseq" --path "$CHECKPOINT" \
    --task translation --source-lang source --target-lang target --gen-subset test \
    --truncate-source --batch-size 32 "${KEEP_LAST_BATCH[@]}" --fp16 \
    --beam 4 --lenpen 2.0 --max-len-a 0 --max-len-b 140 --min-len 55 --no-repeat-ngram-size 3 \
    --bpe gpt2 --gpt2-encoder-json "$WORK/gpt2_bpe/encoder.json" --gpt2-vocab-bpe "$WORK/gpt2_bpe/vocab.bpe" \
    > "$OUT/generate.log"
# D-<id>\t<score>\t<detokenised text>, back in test-set order
grep '^D-' "$OUT/generate.log" | sed 's/^D-//' | sort -n -k1,1 | cut -f3 > "$OUT/test.hypo"
python "$HERE/../rouge.py" --hyp "$OUT/test.hypo" --ref "$WORK/raw/test.target" --summary-level \
    --json-out "$OUT/rouge.json"
