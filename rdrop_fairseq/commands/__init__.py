"""The plugin's commands. Run them by these names (each a runner beside this folder):

    rdrop-fairseq-user-dir                              user_dir.py (a console script)
    python -m rdrop_fairseq.childtuning_mask ARGS       childtuning_mask.py: the ChildTuning-D mask
    torchrun ... -m rdrop_fairseq.torchrun_train ARGS   torchrun_train.py: fairseq-train under torchrun
"""
