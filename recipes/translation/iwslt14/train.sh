#!/usr/bin/env bash
# IWSLT14 De->En, the R-Drop paper's protocol (Liang et al. 2021, Table 1; official run_train.sh).
#   bash train.sh rdrop      # label_smoothed_cross_entropy_with_rdrop, alpha 5   (paper: 37.25 BLEU)
#   bash train.sh baseline   # label_smoothed_cross_entropy, same everything else (paper: 34.64 BLEU)
# The settings are in settings.sh (this dataset's) and ../train.sh (shared with wmt14). Every one can
# be overridden from the environment, e.g. the CPU smoke run in README.md:
#   MAX_UPDATE=20 ARCH=transformer EXTRA_ARGS="--encoder-layers 1 ..." bash train.sh rdrop
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/train.sh" iwslt14 "$@"
