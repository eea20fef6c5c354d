"""When R-Drop applies: option checks, k-step and warm-up schedule, shared by both criteria.

On a training update u, R-Drop runs iff ``model.training``, alpha_u > 0, m >= 2
and u % rdrop_every == 0, with alpha_u = alpha * min(1, u / warmup) (alpha when
warmup is 0). Otherwise the step is the criterion's plain loss.
"""
import logging
import math

from fairseq import utils
from fairseq.logging import metrics

from .model_checks import has_active_dropout

logger = logging.getLogger(__name__)


def validate_rdrop_options(alpha, passes, every, warmup, plain_name="label-smoothed CE"):
    """Reject bad values at startup, naming the command-line option."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"--rdrop-alpha must be a finite number >= 0, got {alpha!r}")
    if passes < 1:
        raise ValueError(f"--rdrop-passes must be >= 1, got {passes}")
    if every < 1:
        raise ValueError(f"--rdrop-every must be >= 1, got {every}")
    if warmup < 0:
        raise ValueError(f"--rdrop-warmup-updates must be >= 0, got {warmup}")
    if alpha > 0 and passes == 1:
        # An error, not a warning: with one pass there is nothing to compare, so the
        # user would silently train a plain model while believing R-Drop is on.
        raise ValueError(
            f"--rdrop-alpha {alpha} needs at least two passes, but --rdrop-passes is 1; "
            f"use --rdrop-passes >= 2, or --rdrop-alpha 0 for plain {plain_name}"
        )


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


def per_copy_data_loss(loss, kl_loss, alpha, m):
    """What the logs call ``loss``: the data term of ONE copy, (loss - alpha * KL) / m.

    The optimised loss sums m copies' losses plus alpha * KL over the tokens of one copy;
    logged as is it would read about m times the baseline's train loss and valid_loss.
    Logging it per copy without the KL keeps train and valid losses comparable across
    runs; the gradient and the objective are untouched (``rdrop_objective`` logs those).
    """
    if kl_loss is None:
        return loss.data
    return (loss.data - alpha * kl_loss.data.to(loss.dtype)) / m


def rdrop_logging(loss, kl_loss, sample_size, ntokens):
    """Logging-output entries of an R-Drop step (summable across workers)."""
    return {
        "rdrop_kl_loss": kl_loss.data,
        "rdrop_ntokens": ntokens,
        "rdrop_objective": loss.data,
        "rdrop_sample_size": sample_size,
    }


def log_rdrop_kl(logging_outputs):
    """Log ``rdrop_kl_loss``: the unweighted KL per target token, base 2 like fairseq's
    losses, weighted by the tokens of R-Drop steps only (k-step R-Drop does not dilute
    it with zeros)."""
    kl_sum = sum(log.get("rdrop_kl_loss", 0) for log in logging_outputs)
    kl_tokens = sum(log.get("rdrop_ntokens", 0) for log in logging_outputs)
    if kl_tokens > 0:
        metrics.log_scalar(
            "rdrop_kl_loss", utils.item(kl_sum) / kl_tokens / math.log(2), kl_tokens, round=4
        )
    # The optimised value (all copies' losses + alpha * KL) per sample-size unit, base 2,
    # over R-Drop steps only: what the gradient descends, beside the per-copy ``loss``.
    objective = sum(log.get("rdrop_objective", 0) for log in logging_outputs)
    objective_size = sum(log.get("rdrop_sample_size", 0) for log in logging_outputs)
    if objective_size > 0:
        metrics.log_scalar(
            "rdrop_objective", utils.item(objective) / objective_size / math.log(2),
            objective_size, round=3,
        )
