"""R-Drop for fairseq, loaded with ``--user-dir``.

Importing the package imports fairseq and registers the criteria (``criterions/``:
``label_smoothed_cross_entropy_with_rdrop``, replacing fairseq's built-in of that name if any,
``adaptive_loss_with_rdrop``, ``sentence_prediction_with_rdrop``), the task
``sentence_prediction_multilabel`` (``tasks/``) and the optimizer ``childtuning_adam``
(``optim/``), then applies the repairs of fairseq and torch in ``fixes/``, each with an
environment switch, and logs one INFO line saying all that (``plugin.py``). The formulas are in
the package ``rdrop_torch`` (torch only). Nothing is compiled or downloaded here.
"""
from .plugin import load

__version__ = "0.1.0"
register = load  # explicit and idempotent: importing the package has already done it

load()
