"""When R-Drop applies: the k-step and warm-up schedule, shared by every R-Drop criterion.

On a training update u, R-Drop runs iff ``model.training``, alpha_u > 0, m >= 2
and u % rdrop_every == 0, with alpha_u = alpha * min(1, u / warmup) (alpha when
warmup is 0). Otherwise the step is the criterion's plain loss.
"""
import logging

from fairseq.logging import metrics

from .model_checks import has_active_dropout
from .options import validate_rdrop_options

logger = logging.getLogger(__name__)


class RDropSchedule:
    """Mixin for a FairseqCriterion: call ``init_rdrop_schedule`` in ``__init__``."""

    def init_rdrop_schedule(self, alpha, passes, every, warmup, plain_name="label-smoothed CE"):
        alpha = float(alpha)
        validate_rdrop_options(alpha, passes, every, warmup, plain_name)
        self.rdrop_alpha = alpha
        self.rdrop_passes = int(passes)
        self.rdrop_every = int(every)
        self.rdrop_warmup_updates = int(warmup)
        self._num_updates = None  # set by set_num_updates; else read from fairseq's trainer
        self._checked_models = set()

    def set_num_updates(self, num_updates):
        """Update counter (also called by trainers/tests that drive the criterion)."""
        self._num_updates = int(num_updates)

    def current_num_updates(self):
        if self._num_updates is not None:
            return self._num_updates
        # fairseq 0.12's trainer never calls criterion.set_num_updates; it publishes
        # the count (also right after loading a checkpoint) as the "num_updates"
        # scalar, logged into every *active* aggregator. Read it from those: after a
        # resume, metrics.load_state_dict swaps in a new "default" aggregator that
        # is no longer active, so get_meter("default", ...) would stay frozen at
        # the resume step. This keeps k-step and warm-up schedules exact across resumes.
        for aggregator in metrics.get_active_aggregators():
            meter = aggregator.get("num_updates")
            if meter is not None and getattr(meter, "val", None) is not None:
                return int(meter.val)
        return 0

    def alpha_at(self, num_updates):
        if self.rdrop_warmup_updates > 0:
            return self.rdrop_alpha * min(1.0, num_updates / self.rdrop_warmup_updates)
        return self.rdrop_alpha

    def passes_for_step(self, model):
        """(m, alpha) for this forward: m = 1 means the plain loss."""
        if not model.training or self.rdrop_alpha == 0 or self.rdrop_passes < 2:
            return 1, 0.0
        update = self.current_num_updates()
        alpha = self.alpha_at(update)
        if alpha == 0 or update % self.rdrop_every != 0:
            return 1, 0.0
        return self.rdrop_passes, alpha

    def _check_model_once(self, model):
        key = id(model)
        if key in self._checked_models:
            return
        self._checked_models.add(key)
        if not has_active_dropout(model):
            logger.warning(
                "R-Drop is on (--rdrop-alpha %g) but every dropout in %s has p = 0: the "
                "copies are identical, so the KL term is identically zero. Set --dropout "
                "(and/or --attention-dropout, --activation-dropout) > 0.",
                self.rdrop_alpha, type(model).__name__,
            )
