#!/usr/bin/env bash
# Test perplexity of a WikiText-103 checkpoint, with the R-Drop paper's evaluation settings
# (dropreg/R-Drop evaluate_lm_wiki103.sh): 512-token blocks, each token scored with >= 400 tokens
# of context.
#
#   CHECKPOINT=work/wikitext103/transformer_lm_gpt-alpha1.0/checkpoint_best.pt bash .../evaluate.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="${WORK:-$REPO/work/wikitext103}"
CHECKPOINT="${CHECKPOINT:?set CHECKPOINT to a checkpoint written by a train_*.sh script}"

fairseq-eval-lm "$WORK/bin" --user-dir "$REPO/rdrop_fairseq" --path "$CHECKPOINT" \
  --gen-subset test --batch-size 2 \
  --tokens-per-sample 512 --context-window 400 \
  2>&1 | tee "$(dirname "$CHECKPOINT")/eval_test.log" | grep -E "Evaluated|Perplexity"
