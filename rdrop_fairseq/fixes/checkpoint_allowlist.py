"""Let fairseq load its own checkpoints under torch's ``weights_only`` loading.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, an unpickler
that accepts tensors and plain containers only. fairseq 0.12 calls
``torch.load(f)`` without the argument, and its checkpoints pickle a few
non-tensor objects, so ``fairseq-generate``, ``fairseq-eval-lm`` and resuming
fail. Measured on fairseq-fixed 0.12.3.1 checkpoints (checkpoint_best/last):

* every checkpoint: the training ``argparse.Namespace`` (``cfg.model`` of
  models configured from the command line);
* with ``--eval-bleu``: the BLEU n-gram counts kept in the saved metrics, numpy
  int64 arrays (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
  ``numpy.dtype``, the int64 dtype class, and ``_codecs.encode``, which pickle
  protocol 2 uses for the array's raw bytes);
* with ``--best-checkpoint-metric pearson`` (or spearman): the best value kept
  in the checkpoint is scipy's numpy float64 (``numpy.core.multiarray.scalar``
  and the float64 dtype class).

We allow exactly those, nothing broader: no ``weights_only=False``, nothing
that can run code beyond building these objects.
"""
import argparse
import codecs
import logging

import numpy as np
import torch
from numpy.core.multiarray import _reconstruct, scalar

from ..switches import NO_CHECKPOINT_ALLOWLIST

logger = logging.getLogger(__name__)

FAIRSEQ_CHECKPOINT_GLOBALS = [
    argparse.Namespace,
    _reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype("int64")),
    codecs.encode,
    scalar,
    type(np.dtype("float64")),
]


def allow_fairseq_checkpoint_globals():
    """Register the allow-list with torch; False on torch < 2.4, which lacks the API (and loads
    with weights_only=False by default). Logs at DEBUG what it adds."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return False
    allowed = getattr(torch.serialization, "get_safe_globals", list)()  # torch >= 2.5
    missing = [g for g in FAIRSEQ_CHECKPOINT_GLOBALS if g not in allowed]
    if missing:
        add(missing)
        logger.debug(
            "rdrop_fairseq: torch.load(weights_only=True) now accepts the globals fairseq checkpoints "
            "pickle: %s (%s=1 skips this)",
            ", ".join(f"{g.__module__}.{g.__qualname__}" for g in missing), NO_CHECKPOINT_ALLOWLIST,
        )
    return True
