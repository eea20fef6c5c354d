"""``torchrun ... -m rdrop_fairseq.torchrun_train DATA ...``: fairseq-train under torchrun
(commands/torchrun_train.py)."""
from .commands.torchrun_train import main

if __name__ == "__main__":
    main()
