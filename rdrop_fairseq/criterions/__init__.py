"""Criteria the plugin registers, one module each, named as registered."""
from . import adaptive_loss_with_rdrop, label_smoothed_cross_entropy_with_rdrop, sentence_prediction_with_rdrop  # noqa: F401
