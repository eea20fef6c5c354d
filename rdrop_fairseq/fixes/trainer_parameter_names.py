"""fairseq's Trainer tells the optimizer it builds the names of its parameters.

fairseq hands optimizers bare tensors (under ``--fp16``, one flat fp32 copy of all of them), but
``childtuning_adam`` selects and masks parameters by name. While ``Trainer._build_optimizer``
runs, the wrapper publishes the trainer's [(name, shape)] in the order it passes the tensors;
an optimizer built inside reads them with ``published_named_shapes()``. Nothing else changes.
"""
import logging
import threading
from contextlib import contextmanager
from itertools import chain

from ..switches import NO_TRAINER_PATCH

logger = logging.getLogger(__name__)

_published = threading.local()


@contextmanager
def published_parameters(named_shapes):
    """Make [(name, shape)] (in the order the trainer passes the tensors) visible to an
    optimizer constructed inside this block."""
    previous = getattr(_published, "value", None)
    _published.value = named_shapes
    try:
        yield
    finally:
        _published.value = previous


def published_named_shapes():
    """The [(name, shape)] published for the optimizer being built, or None outside the block."""
    return getattr(_published, "value", None)


def trainer_named_shapes(trainer):
    """fairseq's Trainer passes filter(requires_grad, chain(model.parameters(),
    criterion.parameters())); named_parameters() walks the same order."""
    return [
        (n, tuple(p.shape))
        for n, p in chain(trainer.get_model().named_parameters(), trainer.get_criterion().named_parameters())
        if p.requires_grad
    ]


def patch_trainer_build_optimizer():
    """Wrap ``Trainer._build_optimizer`` (once); logs at DEBUG. True."""
    from fairseq.trainer import Trainer

    original = Trainer._build_optimizer
    if getattr(original, "_childtuning_publishes_names", False):
        return True

    def _build_optimizer(self):
        named = None if getattr(self, "is_fsdp", False) else trainer_named_shapes(self)
        with published_parameters(named):
            return original(self)

    _build_optimizer._childtuning_publishes_names = True
    _build_optimizer.__wrapped__ = original
    Trainer._build_optimizer = _build_optimizer
    logger.debug("rdrop_fairseq: fairseq's Trainer._build_optimizer now tells optimizers their parameters' "
                 "names (childtuning_adam needs them); %s=1 leaves it as is", NO_TRAINER_PATCH)
    return True
