"""The environment switches that turn off each change the plugin makes to fairseq or torch on load.

Its own module (no imports of ours) so that the fixes and ``plugin.py``, which applies
them, can both read the names without importing each other.
"""
import os

NO_REPLACE_BUILTIN = "RDROP_FAIRSEQ_NO_REPLACE_BUILTIN"
NO_CHECKPOINT_ALLOWLIST = "RDROP_FAIRSEQ_NO_CHECKPOINT_ALLOWLIST"
NO_NGRAM_FIX = "RDROP_FAIRSEQ_NO_NGRAM_FIX"
NO_TRAINER_PATCH = "RDROP_FAIRSEQ_NO_TRAINER_PATCH"
NO_ENCODER_FASTPATH_FIX = "RDROP_FAIRSEQ_NO_ENCODER_FASTPATH_FIX"
NO_PATIENCE_FIX = "RDROP_FAIRSEQ_NO_PATIENCE_FIX"
SWITCHES = (NO_REPLACE_BUILTIN, NO_CHECKPOINT_ALLOWLIST, NO_NGRAM_FIX, NO_TRAINER_PATCH, NO_ENCODER_FASTPATH_FIX,
            NO_PATIENCE_FIX)

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def switched_off(variable):
    """True when the environment variable asks to skip that patch ("1"; unset, "" or "0": apply it)."""
    value = os.environ.get(variable, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{variable}={os.environ[variable]!r}: expected 1 (skip that patch) or 0 / unset (apply it)")
