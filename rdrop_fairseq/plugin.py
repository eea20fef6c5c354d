"""What loading the plugin does to fairseq and torch, and when it does it.

``load()`` registers the criteria (``criterion.py``, ``adaptive.py``), adds fairseq's checkpoint
globals to torch's ``weights_only`` allow-list (``checkpoint.py``) and repairs fairseq's CPU
``--no-repeat-ngram-size`` (``ngram_block.py``). Each of the three logs one INFO line when it
changes something, and each has an environment switch that turns it off (``SWITCHES``).

When: the math modules (``loss``, ``fused``, ``adaptive_math``) must import without fairseq,
but ``import rdrop_fairseq.loss`` runs the package ``__init__`` first, which cannot tell that
import from a plain ``import rdrop_fairseq`` (which must register). So the package registers
at once if fairseq is already imported (``--user-dir``: fairseq imports the package by its
directory after importing itself), and otherwise as soon as fairseq gets imported, if ever
(``_RegisterWhenFairseqLoads``). This file imports no fairseq at module level.
"""
import importlib.util
import logging
import sys

logger = logging.getLogger(__name__)

from .switches import (  # noqa: F401  (the names are part of this module's API too)
    NO_CHECKPOINT_ALLOWLIST, NO_ENCODER_FASTPATH_FIX, NO_NGRAM_FIX, NO_PATIENCE_FIX, NO_REPLACE_BUILTIN,
    NO_TRAINER_PATCH,
    SWITCHES, switched_off,
)


_loaded = False


def load():
    """Register and patch (imports fairseq); once done, later calls do nothing."""
    global _loaded
    if _loaded:
        return
    skip = {variable: switched_off(variable) for variable in SWITCHES}  # a bad value fails before any change
    from .checkpoint import allow_fairseq_checkpoint_globals
    from .ngram_block import patch_fairseq_ngram_blocking

    if skip[NO_CHECKPOINT_ALLOWLIST]:
        logger.info("rdrop_fairseq: %s set: fairseq checkpoints' globals not added to torch's "
                    "weights_only allow-list", NO_CHECKPOINT_ALLOWLIST)
    else:
        allow_fairseq_checkpoint_globals()
    if skip[NO_NGRAM_FIX]:
        logger.info("rdrop_fairseq: %s set: fairseq's CPU --no-repeat-ngram-size left as is "
                    "(it bans nothing, fairseq #4709)", NO_NGRAM_FIX)
    else:
        patch_fairseq_ngram_blocking()
    if skip[NO_ENCODER_FASTPATH_FIX]:
        logger.info("rdrop_fairseq: %s set: fairseq 0.12.2's encoder fast path left as is", NO_ENCODER_FASTPATH_FIX)
    else:
        from .encoder_fastpath import disable_fairseq_encoder_fastpath

        disable_fairseq_encoder_fastpath()  # a no-op (and no log) where fairseq has no such fast path
    # the criteria register themselves on import (registry.py reads NO_REPLACE_BUILTIN)
    from . import criterion  # noqa: F401
    from . import adaptive  # noqa: F401
    from . import sentence_criterion, multilabel_task  # noqa: F401  (sentence-level R-Drop, multi-label task)
    from . import childtuning  # noqa: F401  (registers childtuning_adam)

    if skip[NO_TRAINER_PATCH]:
        logger.info("rdrop_fairseq: %s set: fairseq's Trainer left as is (childtuning_adam will refuse "
                    "to start: it needs parameter names)", NO_TRAINER_PATCH)
    else:
        childtuning.patch_trainer_build_optimizer()
    if skip[NO_PATIENCE_FIX]:
        logger.info("rdrop_fairseq: %s set: --patience's count is not saved in checkpoints (a resumed run "
                    "counts afresh)", NO_PATIENCE_FIX)
    else:
        from .patience import patch_trainer_patience_state

        patch_trainer_patience_state()
    _loaded = True


def load_now_or_when_fairseq_loads():
    if "fairseq" in sys.modules:
        load()
    elif not any(isinstance(f, _RegisterWhenFairseqLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenFairseqLoads())


class _RegisterWhenFairseqLoads:
    """A ``sys.meta_path`` finder that finds nothing itself: it wraps the loading of ``fairseq``
    and of this package's submodules, and calls ``load()`` when one of those finishes executing
    while fairseq is loaded and none of ours is still half-executed. Waiting for ours matters:
    ``import rdrop_fairseq.criterion`` imports fairseq from its first lines, and ``load()`` run
    right then would import ``adaptive``, which needs the unfinished ``criterion``."""

    def __init__(self):
        self.executing = 0  # wrapped modules being executed (nested imports)
        self.searching = False

    def find_spec(self, name, path=None, target=None):
        if self.searching or not (name == "fairseq" or name.startswith(__package__ + ".")):
            return None
        self.searching = True  # the real finder is found by asking the other finders
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module):  # an attribute of this one loader instance, not of its class
            self.executing += 1
            try:
                execute(module)
            finally:
                self.executing -= 1
            if self.executing == 0 and "fairseq" in sys.modules and self in sys.meta_path:
                sys.meta_path.remove(self)
                load()

        loader.exec_module = exec_module
        return spec
