"""What importing the plugin does to fairseq and torch, and the one INFO line that says so.

Importing this module imports the criteria (``criterions/``), the task (``tasks/``) and the
optimizer (``optim/``), which register with fairseq; ``load()`` applies each repair of ``fixes/``
unless its environment switch is set (``switches.py``; docs/criterion.md lists them). Each part
logs its details at DEBUG; ``load()`` logs one INFO line: what was registered, what was changed,
which switches are set and where they are documented.
"""
import logging

from .criterions import (
    adaptive_loss_with_rdrop,
    label_smoothed_cross_entropy_with_rdrop,
    sentence_prediction_with_rdrop,
)
from .fixes import (
    checkpoint_allowlist,
    encoder_fastpath,
    ngram_block,
    patience,
    replace_builtin,
    trainer_parameter_names,
)
from .optim import childtuning_adam
from .switches import (
    NO_CHECKPOINT_ALLOWLIST,
    NO_ENCODER_FASTPATH_FIX,
    NO_NGRAM_FIX,
    NO_PATIENCE_FIX,
    NO_REPLACE_BUILTIN,
    NO_TRAINER_PATCH,
    SWITCHES,
    switched_off,
)
from .tasks import sentence_prediction_multilabel

logger = logging.getLogger(__name__)

SWITCHES_DOC = "docs/criterion.md"
CRITERIA = (label_smoothed_cross_entropy_with_rdrop.CRITERION_NAME, adaptive_loss_with_rdrop.CRITERION_NAME,
            sentence_prediction_with_rdrop.CRITERION_NAME)
# (switch, what the INFO line calls the change, the function that makes it: True where it applies)
FIXES = (
    (NO_CHECKPOINT_ALLOWLIST, "fairseq checkpoints' globals on torch's weights_only allow-list",
     checkpoint_allowlist.allow_fairseq_checkpoint_globals),
    (NO_NGRAM_FIX, "CPU --no-repeat-ngram-size repaired", ngram_block.patch_fairseq_ngram_blocking),
    (NO_ENCODER_FASTPATH_FIX, "0.12.2 encoder fast path off for loaded layers and out of PyTorch DDP",
     encoder_fastpath.patch_fairseq_encoder_fastpath),
    (NO_TRAINER_PATCH, "Trainer names the optimizer's parameters",
     trainer_parameter_names.patch_trainer_build_optimizer),
    (NO_PATIENCE_FIX, "--patience count saved in checkpoints", patience.patch_trainer_patience_state),
)
assert {switch for switch, _, _ in FIXES} | {NO_REPLACE_BUILTIN} == set(SWITCHES)  # replace_builtin reads its own

_loaded = False


def load():
    """Apply the repairs and log the INFO line; once done, later calls do nothing. (The
    registrations happen when this module's imports run.)"""
    global _loaded
    if _loaded:
        return
    skip = {variable: switched_off(variable) for variable in SWITCHES}  # a bad value fails before any change
    changed = [what for switch, what, apply in FIXES if not skip[switch] and apply()]
    logger.info(summary(changed, [variable for variable in SWITCHES if skip[variable]]))
    _loaded = True


def _criterion(name):
    registered, displaced = replace_builtin.REGISTERED.get(name, (name, None))
    if displaced is None:
        return registered
    if registered == name:
        return f"{name} (replacing fairseq's built-in)"
    return f"{registered} (fairseq's built-in keeps {name})"


def summary(changed, switched):
    registered = (f"criteria {', '.join(_criterion(name) for name in CRITERIA)}, "
                  f"task {sentence_prediction_multilabel.TASK_NAME}, optimizer {childtuning_adam.OPTIMIZER_NAME}")
    return (f"rdrop_fairseq: registered {registered}; changed: {', '.join(changed) or 'nothing'}"
            + (f"; switched off: {', '.join(switched)}" if switched else "")
            + f" (details at DEBUG; switches: {SWITCHES_DOC})")

