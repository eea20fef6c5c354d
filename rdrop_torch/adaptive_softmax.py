"""R-Drop loss for adaptive-softmax outputs, in plain PyTorch.

Adaptive softmax (Grave et al., 2017) splits the vocabulary into a head (the
shortlist plus one entry per tail cluster c) and tails. A word w in cluster c
has  P(w) = P_head(c) * P_tail_c(w),  so by the chain rule of KL, for two
distributions P, Q of one row

    KL(P || Q) = KL(head_P || head_Q) + sum_c P_head(c) * KL(tail_c,P || tail_c,Q).

The exact R-Drop term needs every tail on every row: (rows x V) floats, which is
what ``rdrop_loss_reference`` on the full distribution computes. Adaptive
softmax itself evaluates tail c only on the rows whose *target* is in c. This
module keeps that saving by replacing the weight P_head(c) with the indicator
1[target in c]:

    KL_adaptive = 1/(m(m-1)) sum_{i != j} [ sum_{rows, t != pad} KL(head_i || head_j)
                                          + sum_c sum_{rows, t in c} KL(tail_c,i || tail_c,j) ]

an approximation of the full KL (exact in its head term), not the full KL.

    loss = sum_k NLL_adaptive(copy k) + alpha * KL_adaptive

where NLL_adaptive is exactly what fairseq's ``adaptive_loss`` computes: cross
entropy of the head on all rows plus that of each tail on its rows, each with
``ignore_index = pad``. (That includes fairseq's quirk that a tail target equal
to pad after subtracting the cluster offset, i.e. word ``cutoff[c] + pad``, is
ignored; we keep it so the NLL is fairseq's to the bit.)

Layout: every row list is token-interleaved, m consecutive rows per token (copy k of
token n at n*m + k); the plugin's ``adaptive_loss_with_rdrop`` arranges the hidden states so
before calling fairseq's ``AdaptiveSoftmax.forward``.
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor

from .token_loss import multi_pass_kl


def _check_interleaved(rows: Tensor, num_passes: int, what: str) -> None:
    if rows.size(0) % num_passes != 0:
        raise ValueError(
            f"{what} has {rows.size(0)} rows, not a multiple of {num_passes} passes: "
            "the adaptive-softmax output must come from m identical copies of the batch"
        )


def adaptive_nll(
    logits: Sequence[Optional[Tensor]], targets: Sequence[Optional[Tensor]], ignore_index: int
) -> Tensor:
    """fairseq ``adaptive_loss``'s summed cross entropy over head and tails.

    logits, targets: the two lists ``AdaptiveSoftmax.forward`` returns (None for a
    cluster without targets in the batch).
    """
    loss = logits[0].new_zeros(())
    for lg, tg in zip(logits, targets):
        if tg is not None:
            loss = loss + F.cross_entropy(lg, tg, ignore_index=ignore_index, reduction="sum")
    return loss


def adaptive_kl(
    logits: Sequence[Optional[Tensor]],
    head_target: Tensor,
    num_passes: int,
    ignore_index: int,
) -> Tuple[Tensor, List[Tensor]]:
    """(KL_head, [KL_tail_c]) of the formula above, each already divided by m(m-1).

    The rows of ``logits`` are token-interleaved: the head has m*N rows, copy k of
    token n at n*m + k. ``AdaptiveSoftmax.forward`` on such rows, with the target
    repeated the same way, keeps that order in every tail (it selects the rows whose
    target is in the cluster with a sorted ``nonzero``, and the m copies of a token
    share its target), so tail rows come as m consecutive copies per token too.
    ``head_target``: (m*N,) interleaved or (N,) head targets; only its padding
    matters here (copy 0's, as in the main criterion).
    """
    m = num_passes
    head = logits[0]
    _check_interleaved(head, m, "the adaptive-softmax head")
    n = head.size(0) // m
    target = head_target.reshape(-1)
    pad_mask = (target if target.numel() == n else target.view(n, m)[:, 0]).eq(ignore_index)
    # log_softmax in float32: the KL sums many small differences of log-probs
    kl_head = multi_pass_kl(F.log_softmax(head.float(), dim=-1), m, pad_mask=pad_mask)
    kl_tails = []
    for c, tail in enumerate(logits[1:]):
        if tail is None:
            kl_tails.append(kl_head.new_zeros(()))
            continue
        _check_interleaved(tail, m, f"adaptive-softmax tail {c}")
        kl_tails.append(multi_pass_kl(F.log_softmax(tail.float(), dim=-1), m))
    return kl_head, kl_tails


def adaptive_rdrop_loss(
    logits: Sequence[Optional[Tensor]],
    targets: Sequence[Optional[Tensor]],
    num_passes: int,
    alpha: float,
    ignore_index: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(loss, nll_loss, kl_loss) from ``AdaptiveSoftmax.forward`` on m copies.

    loss = sum_k NLL_adaptive(copy k) + alpha * KL_adaptive   (to backpropagate)
    nll_loss = sum_k NLL_adaptive(copy k);  kl_loss = KL_adaptive (float32, unweighted).
    """
    nll = adaptive_nll(logits, targets, ignore_index)
    kl_head, kl_tails = adaptive_kl(logits, targets[0], num_passes, ignore_index)
    kl = kl_head + sum(kl_tails)
    return nll + alpha * kl, nll, kl
