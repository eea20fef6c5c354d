# IWSLT14 De->En: what ../train.sh and ../generate.sh take from this dataset (R-Drop paper, Table 1;
# the official run_train.sh and run_inference.sh). Sourced with REPO and MODE set; every value can be
# overridden from the environment. The settings both datasets share are in ../train.sh, ../generate.sh.
SRC=de
TGT=en
# ---- paper hyperparameters (train.sh) ---------------------------------------------------------
ARCH=${ARCH:-transformer_iwslt_de_en}       # 6+6 layers, d=512, ffn 1024, 4 heads
LR=${LR:-5e-4}
WARMUP_UPDATES=${WARMUP_UPDATES:-4000}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.0001}
DROPOUT=${DROPOUT:-0.3}
MAX_UPDATE=${MAX_UPDATE:-300000}
SEED=${SEED:-64}                            # the official script's seed
EVAL_BLEU_ARGS=${EVAL_BLEU_ARGS:-'{"beam": 5, "max_len_a": 1.2, "max_len_b": 10}'}
# one MAX_TOKENS batch per GPU per update (no --update-freq), as the official script
BATCHES_PER_UPDATE=
# ---- paper decoding settings (generate.sh) ----------------------------------------------------
BEAM=${BEAM:-5}
LENPEN=${LENPEN:-1}
# ---- paths -------------------------------------------------------------------------------------
DATA_BIN=${DATA_BIN:-$REPO/work/iwslt14/data-bin}
SAVE_DIR=${SAVE_DIR:-$REPO/runs/iwslt14/$MODE}
RAW_REF=                                    # none: sacreBLEU scores against the detokenized references
