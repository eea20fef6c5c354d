"""fairseq 0.12.2's "BetterTransformer" encoder fast path: off for loaded layers, and its weight
copies out of PyTorch DDP.

fairseq 0.12.2 (the last PyPI release; fairseq issue #4782) gives every transformer encoder layer
(the transformer's, RoBERTa's) a fast path for inference through torch 1.12's
``torch._transformer_encoder_layer_fwd``, with two consequences the plugin repairs:

* A layer loaded from a checkpoint and never trained in this process (``fairseq-generate``,
  ``fairseq-eval-lm``, any ``load_model_ensemble``) takes that path with the torch 1.12 argument
  list; torch >= 2.0 requires a mask type there, so generation fails with "RuntimeError: Mask
  Type should be defined". We clear the flag the loader sets, so loaded layers run the same code
  as during training (the output is the same up to rounding).
* For that path each layer registers a second, trainable-looking copy of its attention and FFN
  weights (``layers.N.{in_proj,out_proj,fc1,fc2}_{weight,bias}``, ``FASTPATH_COPY``) that training
  never uses: their ``.grad`` stays None, and
  fairseq refills them from the real weights at every checkpoint load. PyTorch DDP
  (``--ddp-backend pytorch_ddp``/``c10d``, fairseq's default on GPUs, ``find_unused_parameters``
  off) waits for a gradient of every parameter, so the second update fails with "Expected to have
  finished reduction in the prior iteration before starting a new one" (parameter indices 1-8 of
  each layer). We tell DDP to leave the copies alone (its ``_ddp_params_and_buffers_to_ignore``).
  Making them untrainable instead would drop them from the optimizer's parameter list, and
  every 0.12.2 checkpoint saved before could no longer resume ("loaded state dict contains a
  parameter group that doesn't match the size of optimizer's group").

ChildTuning never masks the copies either (``optim/childtuning_adam.py``).

fairseq-fixed (and fairseq's main branch) removed the fast path: there both are no-ops, and no
parameter has such a name.
"""
import logging
import re

logger = logging.getLogger(__name__)

FASTPATH_COPY = re.compile(r"(^|\.)layers\.\d+\.(in_proj|out_proj|fc1|fc2)_(weight|bias)$")


def is_fastpath_copy(name):
    """Whether the parameter ``name`` is one of fairseq 0.12.2's untrained fast-path copies."""
    return FASTPATH_COPY.search(name) is not None


def fastpath_copy_names(model):
    """The fast-path copies among ``model.named_parameters()``."""
    return [n for n, _ in model.named_parameters() if is_fastpath_copy(n)]


def patch_fairseq_encoder_fastpath():
    """Both repairs, where fairseq 0.12.2's layer has the fast path; False elsewhere. Logs at DEBUG."""
    try:
        from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
    except ImportError:
        return False
    # precise check: only fairseq versions whose layer overrides the loader to set load_to_BT
    original = TransformerEncoderLayerBase.__dict__.get("_load_from_state_dict")
    if original is None:
        return False
    if not getattr(original, "rdrop_fairseq_patched", False):
        def _load_from_state_dict(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.load_to_BT = False

        _load_from_state_dict.rdrop_fairseq_patched = True
        TransformerEncoderLayerBase._load_from_state_dict = _load_from_state_dict
        logger.debug("rdrop_fairseq: fairseq's TransformerEncoderLayerBase._load_from_state_dict no longer arms "
                     "the torch-1.12 fast path that fails under torch >= 2.0 ('Mask Type should be defined')")
    _patch_distributed_wrapper()
    return True


def _patch_distributed_wrapper():
    """fairseq's trainer wraps the model with ``fairseq.models.DistributedFairseqModel``; before a
    PyTorch DDP wrap, add the copies to the parameters DDP ignores."""
    import fairseq.models
    from fairseq.models import distributed_fairseq_model

    original = distributed_fairseq_model.DistributedFairseqModel
    if getattr(original, "rdrop_fairseq_patched", False):
        return

    def DistributedFairseqModel(args, model, *rest, **kwargs):  # noqa: N802 (fairseq's name)
        copies = fastpath_copy_names(model)
        if copies and getattr(args, "ddp_backend", None) in ("c10d", "pytorch_ddp"):
            ignored = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
            model._ddp_params_and_buffers_to_ignore = sorted(ignored | set(copies))
            logger.debug("rdrop_fairseq: PyTorch DDP ignores the %d untrained fast-path copies of fairseq "
                         "0.12.2's encoder layers", len(copies))
        return original(args, model, *rest, **kwargs)

    DistributedFairseqModel.rdrop_fairseq_patched = True
    DistributedFairseqModel.__wrapped__ = original
    distributed_fairseq_model.DistributedFairseqModel = DistributedFairseqModel
    fairseq.models.DistributedFairseqModel = DistributedFairseqModel  # what fairseq's trainer calls
    logger.debug("rdrop_fairseq: fairseq's DistributedFairseqModel makes PyTorch DDP ignore the encoder "
                 "layers' fast-path copies (they never get a gradient)")
