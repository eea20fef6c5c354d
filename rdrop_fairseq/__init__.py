"""R-Drop for fairseq, loaded with ``--user-dir``.

Importing registers the criterion ``label_smoothed_cross_entropy_with_rdrop``
(replacing fairseq's built-in of that name, if any) and allows the pickled
globals fairseq checkpoints need under torch's ``weights_only`` loading.
Nothing is compiled or downloaded here.
"""
from .checkpoint import allow_fairseq_checkpoint_globals

allow_fairseq_checkpoint_globals()

from . import criterion  # noqa: E402,F401  (registers the criterion)

__version__ = "0.1.0"
