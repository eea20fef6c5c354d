"""``python -m rdrop_fairseq.childtuning_mask <fairseq-train args>``: the ChildTuning-D mask
command (commands/childtuning_mask.py)."""
from .commands.childtuning_mask import cli_main

if __name__ == "__main__":
    cli_main()
