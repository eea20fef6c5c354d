"""What R-Drop criteria log: per-copy loss, the KL term and the optimised objective.

Every entry is a sum over the batch, so fairseq can add them up across workers
(``logging_outputs_can_be_summed``); ``log_rdrop_kl`` turns the sums into the logged metrics.
"""
import math

from fairseq import utils
from fairseq.logging import metrics


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
