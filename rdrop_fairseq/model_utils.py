"""Small helpers the criterion needs about fairseq models and batches."""
import torch


def duplicate_net_input(net_input, num_copies, batch_size):
    """A NEW net_input with every batch-major tensor repeated ``num_copies`` times on dim 0.

    Copy k occupies rows k*B .. (k+1)*B - 1. Tensors without a batch dimension of
    size B and non-tensor values are passed through; the caller's dict and
    tensors are never modified (fairseq reuses samples, e.g. on OOM retries).
    """

    def dup(value):
        if torch.is_tensor(value) and value.dim() > 0 and value.size(0) == batch_size:
            return torch.cat([value] * num_copies, dim=0)
        if isinstance(value, dict):
            return {k: dup(v) for k, v in value.items()}
        return value

    return {k: dup(v) for k, v in net_input.items()}


def unwrap_model(model):
    """The fairseq model inside distributed / proxy wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def has_plain_softmax_output(model):
    """True when ``get_normalized_probs`` is exactly log_softmax(net_output[0]).

    An allow-list on the code itself: the stock model and decoder methods, and no
    adaptive softmax. Anything that overrides them (speech models, adaptive
    softmax LMs, custom heads) is assumed different and goes the reference way.
    """
    from fairseq.models.fairseq_decoder import FairseqDecoder
    from fairseq.models.fairseq_model import BaseFairseqModel

    plain_model_methods = {BaseFairseqModel.get_normalized_probs}
    try:
        from fairseq.models.transformer.transformer_base import TransformerModelBase

        plain_model_methods.add(TransformerModelBase.get_normalized_probs)  # only delegates
    except ImportError:  # fairseq 0.12.2 names it differently; the check stays safe
        pass

    model = unwrap_model(model)
    cls = type(model)
    decoder = getattr(model, "decoder", None)
    return (
        cls.get_normalized_probs in plain_model_methods
        and cls.get_normalized_probs_scriptable is BaseFairseqModel.get_normalized_probs_scriptable
        and decoder is not None
        and type(decoder).get_normalized_probs is FairseqDecoder.get_normalized_probs
        and type(decoder).get_normalized_probs_scriptable
        is FairseqDecoder.get_normalized_probs_scriptable
        and getattr(decoder, "adaptive_softmax", None) is None
    )


def has_active_dropout(model):
    """Whether any dropout module can make two passes differ in train mode."""
    for module in unwrap_model(model).modules():
        name = type(module).__name__
        p = getattr(module, "p", None)
        if ("Dropout" in name or isinstance(module, torch.nn.modules.dropout._DropoutNd)) and (
            isinstance(p, float) and p > 0
        ):
            return True
        # LayerDrop also makes passes differ
        if name == "LayerDropModuleList" and getattr(module, "p", 0) > 0:
            return True
    return False


def normalized_log_probs(model, net_output):
    """``model.get_normalized_probs(net_output, log_probs=True)``, differentiable also
    for adaptive softmax.

    fairseq's ``AdaptiveSoftmax.get_log_prob`` (what ``get_normalized_probs`` calls)
    adds the cluster prior in place onto a LogSoftmax output, so backward fails:
    it is meant for inference. For training we build the same full distribution
    out of place: head log-probs for the shortlist, and for cluster i
    log p(cluster i) + log_softmax(tail_i(h)).
    """
    decoder = getattr(unwrap_model(model), "decoder", None)
    asm = getattr(decoder, "adaptive_softmax", None)
    if asm is None or not torch.is_grad_enabled():
        return model.get_normalized_probs(net_output, log_probs=True)
    hidden = net_output[0]
    x = asm.dropout_module(hidden.reshape(-1, hidden.size(-1)))  # as AdaptiveSoftmax.forward
    head = torch.log_softmax(asm.head(x).float(), dim=-1)
    shortlist = asm.cutoff[0]
    parts = [head[:, :shortlist]]
    for i, tail in enumerate(asm.tail):
        parts.append(torch.log_softmax(tail(x).float(), dim=-1) + head[:, shortlist + i, None])
    return torch.cat(parts, dim=-1).view(*hidden.shape[:-1], -1)
