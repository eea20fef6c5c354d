"""R-Drop for fairseq, loaded with ``--user-dir``.

Importing registers the criteria ``label_smoothed_cross_entropy_with_rdrop``
(replacing fairseq's built-in of that name, if any) and ``adaptive_loss_with_rdrop``
(R-Drop that keeps adaptive softmax's savings), allows the pickled
globals fairseq checkpoints need under torch's ``weights_only`` loading,
repairs fairseq's CPU fallback for ``--no-repeat-ngram-size`` (``ngram_block.py``) and, on
fairseq 0.12.2 with torch >= 2.0, keeps loaded encoders off a broken fast path
(``encoder_fastpath.py``).
Nothing is compiled or downloaded here.
"""
from .checkpoint import allow_fairseq_checkpoint_globals
from .encoder_fastpath import disable_fairseq_encoder_fastpath
from .ngram_block import patch_fairseq_ngram_blocking

allow_fairseq_checkpoint_globals()
patch_fairseq_ngram_blocking()
disable_fairseq_encoder_fastpath()

from . import criterion  # noqa: E402,F401  (registers label_smoothed_cross_entropy_with_rdrop)
from . import adaptive  # noqa: E402,F401  (registers adaptive_loss_with_rdrop)

__version__ = "0.1.0"
