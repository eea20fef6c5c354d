# WMT14 En->De: what ../train.sh and ../generate.sh take from this dataset (R-Drop paper, Table 2).
# Sourced with REPO, MODE and PYTHON set; every value can be overridden from the environment. The
# settings both datasets share are in ../train.sh and ../generate.sh.
SRC=en
TGT=de
# ---- paper hyperparameters (train.sh) ---------------------------------------------------------
ARCH=${ARCH:-transformer_vaswani_wmt_en_de_big}
LR=${LR:-1e-3}
WARMUP_UPDATES=${WARMUP_UPDATES:-6000}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.0}
DROPOUT=${DROPOUT:-0.1}
# The recipe does not know the paper's update count for WMT14; 300k is the IWSLT script's figure. Watch validation BLEU and set MAX_UPDATE to your budget.
MAX_UPDATE=${MAX_UPDATE:-300000}
SEED=${SEED:-1}
EVAL_BLEU_ARGS=${EVAL_BLEU_ARGS:-'{"beam": 4, "lenpen": 0.6, "max_len_a": 1.2, "max_len_b": 10}'}
# 4096 tokens x 16 per update whatever the GPU count: UPDATE_FREQ = 16 / N_GPUS (16 on 1 GPU, 2 on 8)
BATCHES_PER_UPDATE=16
# ---- paper decoding settings (generate.sh) ----------------------------------------------------
BEAM=${BEAM:-4}
LENPEN=${LENPEN:-0.6}
# ---- paths -------------------------------------------------------------------------------------
DATA_BIN=${DATA_BIN:-$REPO/work/wmt14/data-bin}
SAVE_DIR=${SAVE_DIR:-$REPO/runs/wmt14/$MODE}
RAW_REF=${RAW_REF:-$REPO/work/wmt14/wmt14_en_de/test.raw.de}   # untokenized references, used for GEN_SUBSET=test
