"""R-Drop for fairseq, loaded with ``--user-dir``.

Loading the package registers the criteria ``label_smoothed_cross_entropy_with_rdrop``
(replacing fairseq's built-in of that name, if any) and ``adaptive_loss_with_rdrop``
(R-Drop that keeps adaptive softmax's savings), allows the pickled globals fairseq checkpoints
need under torch's ``weights_only`` loading, and repairs fairseq's CPU fallback for
``--no-repeat-ngram-size`` and, on fairseq 0.12.2 with torch >= 2.0, keeps loaded encoders
off a broken fast path (``encoder_fastpath.py``): at once when fairseq is already imported (as under ``--user-dir``),
otherwise when fairseq gets imported, so that the math (``rdrop_fairseq.loss``, ``.fused``,
``.adaptive_math``) imports with torch alone (``plugin.py`` says why and how; each change logs
one INFO line and has an environment switch). Nothing is compiled or downloaded here.
"""
from .plugin import load as register  # noqa: F401  (explicit and idempotent; imports fairseq)
from .plugin import load_now_or_when_fairseq_loads

__version__ = "0.1.0"

load_now_or_when_fairseq_loads()
