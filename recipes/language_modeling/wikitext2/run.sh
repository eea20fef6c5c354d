#!/usr/bin/env bash
# WikiText-2 on CPU: a small transformer_lm trained with and without R-Drop (same seed, same
# epochs), then test perplexity with fairseq-eval-lm.  See README.md for what it printed.
#
#   SETTING=full    bash recipes/language_modeling/wikitext2/run.sh   # default, ~1 h; docs/results.md
#   SETTING=reduced bash ...                                          # 15 min; docs/results.md
#   SETTING=tiny    bash ...                                          # seconds; used by the tests
#
# The baseline and the R-Drop run train at the same time, one thread each (fairseq on CPU uses one
# core well; two runs use the two cores of a small machine).  Outputs go to $WORK (default
# work/wikitext2-$SETTING at the repo root); reruns skip finished stages (.done markers).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
# shellcheck source=../../common/pair.sh
source "$REPO/recipes/common/pair.sh"
USER_DIR="$REPO/rdrop_fairseq"
PYTHON="${PYTHON:-python}"
SETTING="${SETTING:-full}"
WORK="${WORK:-$REPO/work/wikitext2-$SETTING}"
SEED="${SEED:-1}"
ALPHA="${ALPHA:-1.0}"   # the paper's alpha for language modelling
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# Model: a small transformer_lm decoder, dropout 0.3 (dropout is what R-Drop regularises; the paper's LMs
# use 0.1 on 100x more data).  Per setting: training prefix (lines), epochs, tokens/sample, batch.
case "$SETTING" in
  full)    TRAIN_LINES=4000; VALID_LINES=1000; TEST_LINES=0; EPOCHS=4; TPS=128; MAX_TOKENS=1024
           LAYERS=2; DIM=256; FFN=1024; HEADS=4; WARMUP=400 ;;
  reduced) TRAIN_LINES=600;  VALID_LINES=200; TEST_LINES=0;  EPOCHS=3; TPS=64;  MAX_TOKENS=256
           LAYERS=2; DIM=128; FFN=512;  HEADS=4; WARMUP=50 ;;
  tiny)    TRAIN_LINES=120;  VALID_LINES=40;  TEST_LINES=40; EPOCHS=1; TPS=32;  MAX_TOKENS=256
           LAYERS=1; DIM=32;  FFN=64;   HEADS=2; WARMUP=5 ;;
  *) echo "run.sh: unknown SETTING='$SETTING' (use full, reduced or tiny)" >&2; exit 2 ;;
esac

mkdir -p "$WORK"

prepare() {
  rm -rf "$WORK/text" "$WORK/bin"
  "$PYTHON" "$HERE/prepare.py" --out "$WORK/text" --train-lines "$TRAIN_LINES" \
    --valid-lines "$VALID_LINES" --test-lines "$TEST_LINES"
  fairseq-preprocess --only-source --srcdict "$WORK/text/dict.txt" \
    --trainpref "$WORK/text/train.tokens" --validpref "$WORK/text/valid.tokens" \
    --testpref "$WORK/text/test.tokens" --destdir "$WORK/bin" --workers 1
}

train() {  # train NAME CRITERION_ARGS...
  local name="$1"; shift
  rm -rf "$WORK/$name"; mkdir -p "$WORK/$name"
  fairseq-train "$WORK/bin" --user-dir "$USER_DIR" --cpu --seed "$SEED" \
    --task language_modeling --tokens-per-sample "$TPS" --sample-break-mode none \
    --arch transformer_lm --decoder-layers "$LAYERS" --decoder-embed-dim "$DIM" \
    --decoder-input-dim "$DIM" --decoder-output-dim "$DIM" \
    --decoder-ffn-embed-dim "$FFN" --decoder-attention-heads "$HEADS" \
    --share-decoder-input-output-embed --dropout 0.3 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay 0.01 --clip-norm 0.0 \
    --lr 1e-3 --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --warmup-init-lr 1e-07 \
    --max-tokens "$MAX_TOKENS" --max-epoch "$EPOCHS" --num-workers 0 \
    "$@" \
    --save-dir "$WORK/$name/checkpoints" --no-epoch-checkpoints --no-last-checkpoints \
    --log-format json --log-interval 20 > "$WORK/$name/train.log" 2>&1
}

evaluate() {  # evaluate NAME: test perplexity of the best (lowest valid loss) checkpoint
  fairseq-eval-lm "$WORK/bin" --user-dir "$USER_DIR" --cpu --gen-subset test \
    --path "$WORK/$1/checkpoints/checkpoint_best.pt" \
    --tokens-per-sample "$TPS" --context-window 0 --max-tokens 2048 --num-workers 0 \
    > "$WORK/$1/eval_test.log" 2>&1
  grep -o "Loss (base 2): .*" "$WORK/$1/eval_test.log" | tail -1 | tee "$WORK/$1/test_ppl.txt"
}

done_or_run prepare prepare
BASELINE=(--criterion label_smoothed_cross_entropy --label-smoothing 0)
RDROP=(--criterion label_smoothed_cross_entropy_with_rdrop --label-smoothing 0 --rdrop-alpha "$ALPHA")
train_pair BASELINE RDROP
for name in baseline rdrop; do echo -n "[test] $name: "; evaluate "$name"; done
plot_pair wikitext2 "WikiText-2" "$ALPHA"
