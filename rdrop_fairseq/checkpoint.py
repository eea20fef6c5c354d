"""Let fairseq load its own checkpoints under torch's ``weights_only`` loading.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, an unpickler
that accepts tensors and plain containers only. fairseq 0.12 calls
``torch.load(f)`` without the argument, and its checkpoints pickle one
non-tensor object: the training ``argparse.Namespace`` (``cfg.model`` of models
configured from the command line), so ``fairseq-generate``, ``fairseq-eval-lm``
and resuming fail. We allow exactly that global, nothing broader: no
``weights_only=False``, no code execution.
"""
import argparse
import torch

# Measured: checkpoint_best.pt / checkpoint_last.pt of fairseq 0.12 need only this.
FAIRSEQ_CHECKPOINT_GLOBALS = [argparse.Namespace]


def allow_fairseq_checkpoint_globals():
    """Register the allow-list with torch (a no-op on torch < 2.4, which lacks the API)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return False
    add(FAIRSEQ_CHECKPOINT_GLOBALS)
    return True
