"""What the criteria need to know about a fairseq model (no model is changed here)."""
import torch


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
