"""The token-level R-Drop loss, written plainly in PyTorch.

Notation. A batch of B rows is run through the model m times in one forward pass:
each row is repeated m times in place along dim 0 (``layout.py``), so the output
(m*B, *rest, V) holds copy k of row b at row b*m + k, i.e. it views as (B, m, *rest, V).
P_k is the model distribution of copy k, t the target, pad the padding index.

    loss = sum_k LS-NLL(P_k, t) + alpha * KL_m

    KL_m = 1 / (m (m - 1)) * sum_{i != j} sum_{t != pad} KL(P_i || P_j)

For m = 2 this is the paper's  alpha * 1/2 * (KL(P1||P2) + KL(P2||P1)).
Each symmetric pair satisfies

    KL(p||q) + KL(q||p) = sum_v (p_v - q_v) (log p_v - log q_v),

and for m copies the whole double sum needs only O(m) work per row:

    sum_{i != j} KL(P_i || P_j) = sum_v [ m * sum_i p_i log p_i - (sum_i p_i)(sum_j log p_j) ].

LS-NLL follows fairseq's ``label_smoothed_nll_loss`` exactly:
eps_i = eps / (V - 1), LS-NLL = (1 - eps - eps_i) * nll + eps_i * sum_v (-log p_v).

Gradients flow through both sides of every KL (no stop-gradient), as in the
paper. The KL is accumulated in float32 whatever the input dtype.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .layout import check_copies


def label_smoothed_nll_loss(
    lprobs: Tensor,
    target: Tensor,
    epsilon: float,
    ignore_index: Optional[int] = None,
    reduce: bool = True,
) -> Tuple[Tensor, Tensor]:
    """fairseq's label-smoothed NLL, reproduced so the math has no fairseq import.

    lprobs: (..., V) log-probabilities; target: (...) class indices.
    Returns (loss, nll_loss), summed when ``reduce``; padding rows contribute 0.
    """
    if target.dim() == lprobs.dim() - 1:
        target = target.unsqueeze(-1)
    nll_loss = -lprobs.gather(dim=-1, index=target)
    smooth_loss = -lprobs.sum(dim=-1, keepdim=True)
    if ignore_index is not None:
        pad_mask = target.eq(ignore_index)
        nll_loss = nll_loss.masked_fill(pad_mask, 0.0)
        smooth_loss = smooth_loss.masked_fill(pad_mask, 0.0)
    nll_loss = nll_loss.squeeze(-1)
    smooth_loss = smooth_loss.squeeze(-1)
    if reduce:
        nll_loss = nll_loss.sum()
        smooth_loss = smooth_loss.sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss
    return loss, nll_loss


def multi_pass_kl(lprobs: Tensor, num_passes: int, pad_mask: Optional[Tensor] = None) -> Tensor:
    """KL_m = 1/(m(m-1)) * sum_{i != j} sum_rows KL(P_i || P_j), summed over rows.

    lprobs: (m * B, *rest, V) log-probabilities, copies interleaved along dim 0 (copy k
    of row b at b*m + k). pad_mask: B * prod(rest) entries, (B, *rest) or flat, True
    where the row is padding (excluded). Computed in float32 (float64 for float64 input)
    with the O(m) identity in the module docstring; differentiable w.r.t. every copy.
    """
    m = num_passes
    if m < 2:
        return lprobs.new_zeros((), dtype=torch.promote_types(lprobs.dtype, torch.float32))
    if lprobs.size(0) % m != 0:
        raise ValueError(f"lprobs have {lprobs.size(0)} rows in dim 0, not divisible by {m} passes")
    acc_dtype = torch.promote_types(lprobs.dtype, torch.float32)  # fp32, or fp64 for gradcheck
    lp = lprobs.to(acc_dtype).reshape(lprobs.size(0) // m, m, -1, lprobs.size(-1))  # (B, m, R, V)
    p = lp.exp()
    per_row = m * (p * lp).sum(dim=(1, 3)) - (p.sum(1) * lp.sum(1)).sum(-1)  # (B, R)
    if pad_mask is not None:
        per_row = per_row.masked_fill(pad_mask.reshape(per_row.shape), 0.0)
    return per_row.sum() / (m * (m - 1))


def rdrop_loss_reference(
    lprobs: Tensor,
    target: Tensor,
    num_passes: int,
    alpha: float,
    epsilon: float,
    ignore_index: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """R-Drop loss from log-probabilities of the m interleaved copies.

    lprobs: (m * B, *rest, V), copy k of row b at b*m + k (e.g. (m * N, V), or the
    model's (m * B, T, V) as it comes: do not flatten it, that moves the copy index
    inside); target: one copy (B, *rest), or all copies (m * B, *rest), interleaved.
    Returns (loss, nll_loss, kl_loss), all summed over non-padding tokens:
      loss    = sum_k LS-NLL_k + alpha * KL_m   (the value to backpropagate)
      nll_loss = sum_k NLL_k                    (not smoothed)
      kl_loss = KL_m                            (unweighted, float32)
    The KL skips rows where copy 0's target is padding. This is the path for any
    ``get_normalized_probs`` (adaptive softmax included); ``fused.py``
    computes the same from logits with far less memory.
    """
    m = num_passes
    check_copies(lprobs, target, m, what="lprobs")
    b = lprobs.size(0) // m
    if target.size(0) == b and m > 1:
        target = target.repeat_interleave(m, dim=0)
    ls_loss, nll_loss = label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index=ignore_index)
    pad_mask = target.reshape(b, m, -1)[:, 0].eq(ignore_index)
    kl = multi_pass_kl(lprobs, m, pad_mask=pad_mask)
    loss = ls_loss + alpha * kl if m > 1 else ls_loss
    return loss, nll_loss, kl
