"""The plugin's commands:

    rdrop-fairseq-user-dir                              the folder to pass to --user-dir (a setup.py script)
    python -m rdrop_fairseq.childtuning_mask ARGS       childtuning_mask.py: the ChildTuning-D mask
    torchrun ... -m rdrop_fairseq.torchrun_train ARGS   torchrun_train.py: fairseq-train under torchrun

The two modules run by ``-m`` keep their names beside this folder (``rdrop_fairseq/childtuning_mask.py``,
``rdrop_fairseq/torchrun_train.py``), each only calling its command here.
"""
