"""R-Drop (Liang et al., NeurIPS 2021) for any PyTorch training loop: the losses in plain PyTorch.

R-Drop runs every example through the model m times (m = 2 in the paper) with dropout on, and
adds to the data loss alpha times the KL divergence between the copies' output distributions,
averaged over the m (m - 1) ordered pairs (for m = 2: alpha * 1/2 (KL(P1||P2) + KL(P2||P1))).
Here the m copies come from ONE forward pass over a batch whose rows are each repeated m times
in place, so copy k of row b is row b*m + k of the output::

    inputs = inputs.repeat_interleave(m, dim=0)   # or duplicate_net_input(batch_dict, m, B)
    logits = model(inputs)                       # (m*B, T, V); do not flatten before the loss
    loss, nll, kl = fused_rdrop_loss(logits, target, num_passes=m, alpha=alpha, epsilon=0.1,
                                     ignore_index=pad)
    (loss / target.ne(pad).sum()).backward()    # the losses are sums over tokens

Token level (sequence models; ``target`` holds one copy's labels, or all m copies'):

* ``fused_rdrop_loss`` from logits: label-smoothed NLL of every copy plus alpha * KL, chunk by
  chunk with a closed-form gradient through every copy, about one logits-sized buffer of extra
  memory whatever m (``fused.py``);
* ``rdrop_loss_reference``: the same from log-probabilities of any distribution (``token_loss.py``),
  built from ``label_smoothed_nll_loss`` (fairseq's) and ``multi_pass_kl``.

Sentence level (classification, regression and multi-label heads): ``sentence_rdrop_loss``
(``sentence_loss.py``). Adaptive softmax: ``adaptive_rdrop_loss`` (``adaptive_softmax.py``).
The copy layout and its checks: ``duplicate_net_input``, ``check_copies`` (``layout.py``).
ChildTuning's gradient masks are in ``rdrop_torch.childtuning``.

Every loss returns (loss, data loss, consistency term), summed (over tokens or sentences), in
float32 or wider. This package never imports fairseq; the fairseq plugin ``rdrop_fairseq`` is
built on it. Worked examples: ``examples/plain_pytorch.py`` and ``examples/huggingface_style.py``.
"""
from .adaptive_softmax import adaptive_rdrop_loss
from .fused import fused_rdrop_loss
from .layout import check_copies, duplicate_net_input
from .sentence_loss import sentence_rdrop_loss
from .token_loss import label_smoothed_nll_loss, multi_pass_kl, rdrop_loss_reference

__version__ = "0.1.0"
__all__ = [
    "adaptive_rdrop_loss",
    "check_copies",
    "duplicate_net_input",
    "fused_rdrop_loss",
    "label_smoothed_nll_loss",
    "multi_pass_kl",
    "rdrop_loss_reference",
    "sentence_rdrop_loss",
]
