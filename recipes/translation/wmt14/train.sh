#!/usr/bin/env bash
# WMT14 En->De, the R-Drop paper's protocol (Liang et al. 2021, Table 2: R-Drop 30.91 BLEU).
#   bash train.sh rdrop      # label_smoothed_cross_entropy_with_rdrop, alpha 5
#   bash train.sh baseline   # label_smoothed_cross_entropy, same everything else
# Batch: 4096 tokens x UPDATE_FREQ per GPU. The default keeps 4096 x 16 tokens per update whatever the
# GPU count: UPDATE_FREQ = 16 / n_gpus (16 on 1 GPU, 2 on 8 GPUs). The settings are in settings.sh
# (this dataset's) and ../train.sh (shared with iwslt14); any one can be overridden from the environment.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/train.sh" wmt14 "$@"
