#!/usr/bin/env bash
# SciTLDR-A on CPU: a small BART-architecture model trained from scratch with and without R-Drop
# (same seed, same epochs), beam-search TLDRs for the test abstracts, ROUGE-1/2/L F1 against all
# of each paper's TLDRs (best reference kept).  See README.md for what it printed.
#
#   SETTING=full    bash recipes/summarization/scitldr/run.sh   # default, ~1 h; docs/results.md
#   SETTING=reduced bash ...                                    # 15 min; docs/results.md
#   SETTING=tiny    bash ...                                    # seconds; used by the tests
#
# The two runs train at the same time, one thread each.  Outputs go to $WORK (default
# work/scitldr-$SETTING at the repo root); reruns skip finished stages (.done markers).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
# shellcheck source=../../common/pair.sh
source "$REPO/recipes/common/pair.sh"
# shellcheck source=../../common/fairseq_flags.sh
source "$REPO/recipes/common/fairseq_flags.sh"   # KEEP_LAST_BATCH: every sentence in every batch
USER_DIR="$REPO/rdrop_fairseq"
PYTHON="${PYTHON:-python}"
SETTING="${SETTING:-full}"
WORK="${WORK:-$REPO/work/scitldr-$SETTING}"
SEED="${SEED:-1}"
ALPHA="${ALPHA:-0.7}"   # the paper's alpha for summarization (CNN/DM)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# bart_base shrunk to LAYERS encoder + LAYERS decoder layers of width DIM; trained from scratch.
case "$SETTING" in
  full)    TRAIN_LIMIT=0;  EVAL_LIMIT=0;  VOCAB=8000; EPOCHS=12; MAX_TOKENS=4096; WARMUP=200; LR=1e-3
           LAYERS=2; DIM=128; FFN=512;  HEADS=4; BEAM=4 ;;
  reduced) TRAIN_LIMIT=0;  EVAL_LIMIT=0;  VOCAB=8000; EPOCHS=3;  MAX_TOKENS=4096; WARMUP=100; LR=1e-3
           LAYERS=2; DIM=128; FFN=512;  HEADS=4; BEAM=4 ;;
  tiny)    TRAIN_LIMIT=48; EVAL_LIMIT=12; VOCAB=1000; EPOCHS=4;  MAX_TOKENS=600;  WARMUP=10;  LR=5e-3
           LAYERS=1; DIM=32;  FFN=64;   HEADS=2; BEAM=2 ;;
  *) echo "run.sh: unknown SETTING='$SETTING' (use full, reduced or tiny)" >&2; exit 2 ;;
esac
# Source abstracts are cut to 512 pieces (the longest test abstract has 483 of 8k-vocab pieces).
POSITIONS=(--truncate-source --max-source-positions 512 --max-target-positions 128)

mkdir -p "$WORK"

prepare() {
  rm -rf "$WORK/data" "$WORK/bin"
  "$PYTHON" "$HERE/prepare.py" --out "$WORK/data" --vocab-size "$VOCAB" \
    --train-limit "$TRAIN_LIMIT" --eval-limit "$EVAL_LIMIT"
  # One joined dictionary: BART shares the encoder, decoder and output embeddings.
  fairseq-preprocess --source-lang src --target-lang tgt --joined-dictionary \
    --trainpref "$WORK/data/spm/train" --validpref "$WORK/data/spm/valid" \
    --testpref "$WORK/data/spm/test" --destdir "$WORK/bin" --workers 1
}

train() {  # train NAME CRITERION_ARGS...
  local name="$1"; shift
  rm -rf "$WORK/$name"; mkdir -p "$WORK/$name"
  fairseq-train "$WORK/bin" --user-dir "$USER_DIR" --cpu --seed "$SEED" \
    --task translation --source-lang src --target-lang tgt "${POSITIONS[@]}" \
    --arch bart_base --encoder-layers "$LAYERS" --decoder-layers "$LAYERS" \
    --encoder-embed-dim "$DIM" --decoder-embed-dim "$DIM" \
    --encoder-ffn-embed-dim "$FFN" --decoder-ffn-embed-dim "$FFN" \
    --encoder-attention-heads "$HEADS" --decoder-attention-heads "$HEADS" \
    --share-all-embeddings --dropout 0.3 --attention-dropout 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay 0.01 --clip-norm 0.1 \
    --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --warmup-init-lr 1e-07 \
    --max-tokens "$MAX_TOKENS" "${KEEP_LAST_BATCH[@]}" --max-epoch "$EPOCHS" --num-workers 0 \
    "$@" \
    --save-dir "$WORK/$name/checkpoints" --no-epoch-checkpoints --no-last-checkpoints \
    --log-format json --log-interval 20 > "$WORK/$name/train.log" 2>&1
}

evaluate() {  # evaluate NAME: beam search on test with the best checkpoint, then ROUGE
  local dir="$WORK/$1"
  fairseq-generate "$WORK/bin" --user-dir "$USER_DIR" --cpu --gen-subset test \
    --task translation --source-lang src --target-lang tgt "${POSITIONS[@]}" \
    --path "$dir/checkpoints/checkpoint_best.pt" --batch-size 32 --num-workers 0 \
    "${KEEP_LAST_BATCH[@]}" \
    --beam "$BEAM" --lenpen 1.0 --max-len-a 0 --max-len-b 40 --min-len 5 --no-repeat-ngram-size 3 \
    --remove-bpe sentencepiece > "$dir/generate_test.log" 2>&1
  # H-<id>\t<score>\t<text>: put the hypotheses back in test-set order
  grep '^H-' "$dir/generate_test.log" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 > "$dir/test.hypo"
  "$PYTHON" "$HERE/../rouge.py" --hyp "$dir/test.hypo" --ref-jsonl "$WORK/data/raw/test.refs.jsonl" \
    --json-out "$dir/test_rouge.json" | tee "$dir/test_rouge.txt"
}

done_or_run prepare prepare
BASELINE=(--criterion label_smoothed_cross_entropy --label-smoothing 0.1)
RDROP=(--criterion label_smoothed_cross_entropy_with_rdrop --label-smoothing 0.1 --rdrop-alpha "$ALPHA")
train_pair BASELINE RDROP
for name in baseline rdrop; do echo -n "[test] $name: "; evaluate "$name"; done

plot_pair scitldr "SciTLDR-A" "$ALPHA"
