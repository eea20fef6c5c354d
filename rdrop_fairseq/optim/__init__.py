"""Optimizers the plugin registers: ``childtuning_adam``."""
from . import childtuning_adam  # noqa: F401
