"""Tasks the plugin registers: ``sentence_prediction_multilabel``."""
from . import sentence_prediction_multilabel  # noqa: F401
