"""A fairseq model's log-probabilities, differentiable also for adaptive softmax.

The criteria's reference path and the exact KL over an adaptive-softmax LM's full
vocabulary need ``get_normalized_probs`` with a gradient, which fairseq's adaptive softmax
does not give (``adaptive_log_probs`` says why).
"""
import torch
from torch import Tensor

from .model_checks import unwrap_model


def adaptive_log_probs(adaptive_softmax, hidden: Tensor) -> Tensor:
    """Full-vocabulary log-probs (..., V) of fairseq's ``AdaptiveSoftmax``, differentiable.

    fairseq's ``AdaptiveSoftmax.get_log_prob`` adds the cluster prior in place onto a
    LogSoftmax output, so backward fails: it is meant for inference. This builds the
    same distribution out of place: head log-probs for the shortlist, and for cluster
    i log p(cluster i) + log_softmax(tail_i(h)).
    """
    asm = adaptive_softmax
    x = asm.dropout_module(hidden.reshape(-1, hidden.size(-1)))  # as AdaptiveSoftmax.forward
    head = torch.log_softmax(asm.head(x).float(), dim=-1)
    shortlist = asm.cutoff[0]
    parts = [head[:, :shortlist]]
    for i, tail in enumerate(asm.tail):
        parts.append(torch.log_softmax(tail(x).float(), dim=-1) + head[:, shortlist + i, None])
    return torch.cat(parts, dim=-1).view(*hidden.shape[:-1], -1)


def normalized_log_probs(model, net_output) -> Tensor:
    """``model.get_normalized_probs(net_output, log_probs=True)``, differentiable also
    for adaptive softmax (``adaptive_log_probs`` while grad is enabled)."""
    decoder = getattr(unwrap_model(model), "decoder", None)
    asm = getattr(decoder, "adaptive_softmax", None)
    if asm is None or not torch.is_grad_enabled():
        return model.get_normalized_probs(net_output, log_probs=True)
    return adaptive_log_probs(asm, net_output[0])
