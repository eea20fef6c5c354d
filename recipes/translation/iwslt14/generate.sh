#!/usr/bin/env bash
# Translate the IWSLT14 De->En test set with a checkpoint from train.sh and score it two ways:
# compound-split tokenized BLEU (what the paper reports, as fairseq's scripts/compound_split_bleu.sh)
# and detokenized sacreBLEU (against the detokenized lowercased references).
#   bash generate.sh rdrop               # checkpoint_best.pt (best validation BLEU)
#   AVG_LAST=5 bash generate.sh rdrop    # average the last 5 epoch checkpoints first
# Beam 5, lenpen 1 (settings.sh); the rest is ../generate.sh, shared with wmt14.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/generate.sh" iwslt14 "$@"
