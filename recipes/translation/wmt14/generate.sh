#!/usr/bin/env bash
# Translate newstest2014 En->De with a checkpoint from train.sh and score it two ways:
# compound-split tokenized BLEU (the paper's number, as fairseq's scripts/compound_split_bleu.sh) and
# detokenized sacreBLEU against the untokenized newstest2014 references (test.raw.de from prepare.py).
#   bash generate.sh rdrop               # checkpoint_best.pt
#   AVG_LAST=5 bash generate.sh rdrop    # average the last 5 epoch checkpoints first
# Beam 4, lenpen 0.6, RAW_REF (settings.sh); the rest is ../generate.sh, shared with iwslt14.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/generate.sh" wmt14 "$@"
