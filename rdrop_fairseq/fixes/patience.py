"""``--patience`` that survives a resume.

fairseq counts the validations without improvement in attributes of the function
``fairseq_cli.train.should_stop_early`` (``best``, ``num_runs``) and never saves them: a run resumed
from ``checkpoint_last.pt`` starts counting afresh from its first validation, taking that value as
the best so far. A long run interrupted once can then train up to ``patience`` epochs more than
the same run uninterrupted, and one interrupted often may never stop. This change saves the count
in each checkpoint's ``extra_state`` and restores it on load. A checkpoint saved without it (plain
fairseq) restores the best value fairseq does keep (``extra_state["best"]``, the same metric) with
the count at 0.
"""
import logging
import sys

from ..switches import NO_PATIENCE_FIX

logger = logging.getLogger(__name__)

STATE_KEY = "rdrop_fairseq_should_stop_early"


def _early_stop_function():
    """fairseq's ``should_stop_early`` where fairseq_cli.train is loaded (fairseq-train), else None."""
    train = sys.modules.get("fairseq_cli.train")
    return getattr(train, "should_stop_early", None)


def patience_state():
    """What ``should_stop_early`` knows now: {"best": value or None, "num_runs": int}, or None."""
    function = _early_stop_function()
    if function is None:
        return None
    return {"best": getattr(function, "best", None), "num_runs": getattr(function, "num_runs", 0)}


def restore_patience_state(extra_state):
    """Set ``should_stop_early``'s count from a loaded checkpoint's ``extra_state``; returns what was set."""
    function = _early_stop_function()
    if function is None or not extra_state:
        return None
    state = extra_state.get(STATE_KEY)
    if state is None:
        if extra_state.get("best") is None:
            return None
        state = {"best": extra_state["best"], "num_runs": 0}
    if state["best"] is None:
        return None
    function.best = state["best"]
    function.num_runs = int(state["num_runs"])
    return dict(state)


def patch_trainer_patience_state():
    """Wrap ``Trainer.save_checkpoint`` and ``load_checkpoint`` (once); logs at DEBUG. True."""
    from fairseq.trainer import Trainer

    if getattr(Trainer.save_checkpoint, "_saves_patience", False):
        return True
    original_save, original_load = Trainer.save_checkpoint, Trainer.load_checkpoint

    def save_checkpoint(self, filename, extra_state):
        state = patience_state()
        if state is not None:
            extra_state = dict(extra_state, **{STATE_KEY: state})
        return original_save(self, filename, extra_state)

    def load_checkpoint(self, filename, *args, **kwargs):
        extra_state = original_load(self, filename, *args, **kwargs)
        reset_meters = kwargs.get("reset_meters", args[3] if len(args) > 3 else False)
        if not reset_meters:  # fairseq's own "best" is not restored with --reset-meters either
            restored = restore_patience_state(extra_state)
            if restored is not None:
                logger.info("rdrop_fairseq: --patience resumes from %s: best %s, %d validation(s) without "
                            "improvement", filename, restored["best"], restored["num_runs"])
        return extra_state

    save_checkpoint._saves_patience = True
    save_checkpoint.__wrapped__, load_checkpoint.__wrapped__ = original_save, original_load
    Trainer.save_checkpoint, Trainer.load_checkpoint = save_checkpoint, load_checkpoint
    logger.debug("rdrop_fairseq: fairseq's Trainer now saves --patience's count in checkpoints and restores it "
                 "on resume (fairseq forgets it); %s=1 leaves it as is", NO_PATIENCE_FIX)
    return True
