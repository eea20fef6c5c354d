"""Keep fairseq 0.12.2's transformer encoder off its broken "BetterTransformer" fast path.

fairseq 0.12.2 (the last PyPI release) sends a transformer encoder layer that was loaded from a
checkpoint and never trained in this process (``fairseq-generate``, ``fairseq-eval-lm``, any
``load_model_ensemble``) through ``torch._transformer_encoder_layer_fwd`` with the torch 1.12
argument list; torch >= 2.0 requires a mask type there, so generation fails with
"RuntimeError: Mask Type should be defined". The fork fairseq-fixed (and fairseq's main branch)
removed that path, so on them this is a no-op. We clear the flag the loader sets, so loaded
layers run the same code as during training (the output is the same up to rounding).
"""
import logging

logger = logging.getLogger(__name__)


def disable_fairseq_encoder_fastpath():
    """Patch ``TransformerEncoderLayerBase._load_from_state_dict`` where it arms the fast path."""
    try:
        from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
    except ImportError:
        return False
    # precise check: only fairseq versions whose layer overrides the loader to set load_to_BT
    original = TransformerEncoderLayerBase.__dict__.get("_load_from_state_dict")
    if original is None or getattr(original, "rdrop_fairseq_patched", False):
        return False

    def _load_from_state_dict(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.load_to_BT = False

    _load_from_state_dict.rdrop_fairseq_patched = True
    TransformerEncoderLayerBase._load_from_state_dict = _load_from_state_dict
    logger.info("rdrop_fairseq: fairseq's TransformerEncoderLayerBase._load_from_state_dict no longer arms "
                "the torch-1.12 fast path that fails under torch >= 2.0 ('Mask Type should be defined'); "
                "RDROP_FAIRSEQ_NO_ENCODER_FASTPATH_FIX=1 skips this")
    return True
