"""The R-Drop loss fused with its own backward, computed from logits chunk by chunk.

Same meaning as ``token_loss.rdrop_loss_reference`` (read its docstring for
the loss), but it takes LOGITS and never builds a full-size log-prob tensor: it walks
over chunks of token rows (the same rows of every copy together), upcasts only the chunk
to float32, takes ONE log_softmax of the chunk, and from it gets the label-smoothed NLL,
the NLL and the multi-pass KL, plus their closed-form gradient w.r.t. the logits,
written into one preallocated buffer in the logits dtype.  Backward just scales that
buffer by grad_output.  Extra peak memory is about one logits-sized buffer, whatever m.

Per row (lp_k = log_softmax of copy k, p_k = exp(lp_k), t its target, V the vocab):

    eps_i = eps / (V - 1),  w = (1 - eps - eps_i) * onehot(t) + eps_i
    LS-NLL_k = (1 - eps - eps_i) * (-lp_k[t]) + eps_i * sum_v(-lp_k)
    d LS-NLL_k / d logits_k = (sum_v w) * p_k - w

    S = sum_j lp_j,  P = sum_j p_j,  c_k = sum_v p_k * (m * lp_k - S)
    sum_{i != j} KL(P_i || P_j) = sum_k c_k
    d [sum_{i != j} KL] / d logits_k = p_k * (m * lp_k - S - c_k) + m * p_k - P

and KL_m is that double sum over 1 / (m (m - 1)); for m = 2 the KL gradient is
p * (log p - log q - KL(p||q)) + p - q.  Rows whose target (copy 1's, for the KL;
each copy's own, for its NLL) equals ``ignore_index`` get zero loss and zero gradient.

Layout: copies are interleaved along dim 0 (``layout.py``): logits (m*B, *rest, V)
are viewed as (B, m, R, V), copy k of row b at [b, k]. The kernel walks over tiles of
whole batch rows (or, for rows longer than a chunk, pieces of one row) with all m copies
of each row in the tile; a tile of whole rows is one contiguous block of the logits and
of the gradient buffer, so it is read and written in place.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .layout import check_copies

# Target size of one chunk's float32 working set (m copies x rows x V).  On CPU,
# benchmarks/bench_chunk.py found the time flat from 0.5 to 8 MB (chunks that stay in
# cache, per-op Python overhead amortised) and worse outside; see docs/performance.md.
# On a GPU a chunk must fill the device instead; the CUDA size is a guess, NOT measured.
DEFAULT_CHUNK_BYTES = 2 * 1024 * 1024
DEFAULT_CHUNK_BYTES_CUDA = 64 * 1024 * 1024


def default_chunk_rows(num_passes: int, vocab_size: int, device_type: str = "cpu") -> int:
    """Rows per copy in one chunk so that the float32 chunk is about the default size.

    On CPU the size grows with the intra-op threads: every op splits the chunk across
    them, so each core keeps ~DEFAULT_CHUNK_BYTES in its own cache, and there are
    fewer parallel regions (each a barrier) per call.
    """
    if device_type == "cuda":
        size = DEFAULT_CHUNK_BYTES_CUDA
    else:
        size = DEFAULT_CHUNK_BYTES * max(1, torch.get_num_threads())
    return max(1, size // (4 * num_passes * vocab_size))


def _tiles(batch: int, row_len: int, chunk_rows: int):
    """(batch slice, row slice) pairs covering a (batch, row_len) grid, each at most
    ``chunk_rows`` cells: whole rows when a row fits (a contiguous block of the
    interleaved logits), else one row cut into near-equal pieces."""
    if row_len <= chunk_rows:
        step = chunk_rows // row_len
        return [(slice(b, min(b + step, batch)), slice(0, row_len)) for b in range(0, batch, step)]
    pieces = -(-row_len // chunk_rows)
    size = -(-row_len // pieces)
    return [(slice(b, b + 1), slice(r, min(r + size, row_len)))
            for b in range(batch) for r in range(0, row_len, size)]


class _EagerChunk:
    """Loss terms and logits-gradient of one tile, with scratch buffers reused across tiles.

    A tile is (cb, m, cr, V): cb batch rows, their m copies, cr token positions. Why the
    reuse: on CPU every fresh chunk-sized temporary is a fresh mmap whose pages fault in
    on first touch, which cost more than the arithmetic (2x in total when measured);
    here ~12 passes over the tile write into three buffers allocated once per call,
    the gradient goes straight into the caller's buffer, and per-row constants and
    masks are built once per call, not per tile.
    """

    def __init__(self, cells: int, vocab: int, m: int, dtype: torch.dtype, device):
        """cells: the largest tile's batch rows x positions (per copy)."""
        self.compute_dtype = torch.promote_types(dtype, torch.float32)
        size = m * cells * vocab
        self.lp = torch.empty(size, dtype=self.compute_dtype, device=device)
        self.p = torch.empty(size, dtype=self.compute_dtype, device=device)
        self.s = torch.empty(cells * vocab, dtype=self.compute_dtype, device=device)
        self.nck = torch.empty(m * cells, dtype=self.compute_dtype, device=device)

    def __call__(self, x, target, rows, out, grad_out):
        """x: (cb, m, cr, V) logits; target (cb, m, cr); rows: the tile's slices of
        the per-row constants (a _Rows); out: the tile's slices of the per-row results,
        written in place: lp_t (cb, m, cr) = lp_k[t], lp_sum (cb, m, cr) = sum_v lp_k,
        neg_kl (cb, 1, cr) = -sum_{i != j} KL, all unmasked.
        grad_out: (cb, m, cr, V) view of the gradient buffer, or None."""
        cb, m, cr, vocab = x.shape
        lp = self.lp[: x.numel()].view(x.shape)
        p = self.p[: x.numel()].view(x.shape)
        if x.dtype != self.compute_dtype:
            torch._log_softmax(p.copy_(x), -1, False, out=lp)  # upcast only this tile
        elif x.is_contiguous():
            torch._log_softmax(x, -1, False, out=lp)
        elif cb == 1:  # a piece of one long row: each copy's piece is contiguous
            for k in range(m):
                torch._log_softmax(x[:, k], -1, False, out=lp[:, k])
        else:
            torch._log_softmax(p.copy_(x), -1, False, out=lp)
        torch.exp(lp, out=p)
        out.lp_t.copy_(lp.gather(-1, target.unsqueeze(-1)).squeeze(-1))
        torch.sum(lp, -1, out=out.lp_sum)
        s = self.s[: cb * cr * vocab].view(cb, 1, cr, vocab)
        nck = self.nck[: cb * m * cr].view(cb, m, cr)
        if m > 1:
            torch.sum(lp, 1, keepdim=True, out=s)
            neg_a = torch.add(s, lp, alpha=-m, out=lp)  # -A_k = S - m lp_k
            # -c_k = sum_v p_k (-A_k), one copy at a time through the free S buffer
            # (a batched bmm is 4x slower on CPU than mul + sum here).
            for k in range(m):
                torch.sum(torch.mul(p[:, k], neg_a[:, k], out=s[:, 0]), -1, out=nck[:, k])
            torch.sum(nck, 1, keepdim=True, out=out.neg_kl)
        if grad_out is None:
            return
        if rows.kl_grad:
            k = rows.kl_weight  # (cb, 1, cr, 1)
            # g = p * B + Q,  B = sum_w*ls + k*m + k*(-c_k) - k*(-A_k),  Q = -k*P - eps_i*ls
            r = torch.addcmul(rows.b_base, k, nck.unsqueeze(-1))
            b = torch.addcmul(r, neg_a, k, value=-1.0, out=lp)
            q = torch.sum(p, 1, keepdim=True, out=s)  # P
            if rows.same_masks:  # Q = -e - k*P in one pass, shared by the copies
                q = torch.addcmul(rows.neg_e[:, :1], q, k, value=-1.0, out=s)
                torch.addcmul(q, b, p, out=grad_out)
            else:
                q.mul_(-k)
                for j in range(m):
                    c = slice(j, j + 1)
                    torch.addcmul(q + rows.neg_e[:, c], b[:, c], p[:, c], out=grad_out[:, c])
        else:
            torch.addcmul(rows.neg_e, p, rows.sum_w, out=grad_out)
        grad_out.scatter_add_(-1, target.unsqueeze(-1), rows.onehot)


class _Rows:
    """Per-row tensors, (B, m or 1, R[, 1]), built once per call and sliced per tile."""

    def __init__(self, **tensors):
        self.__dict__.update(tensors)

    def slice(self, batch, positions):
        return _Rows(**{
            k: v[batch, :, positions] if isinstance(v, Tensor) else v
            for k, v in self.__dict__.items()
        })


class _FusedRDropLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, m, alpha, epsilon, ignore_index, chunk_rows, need_grad):
        vocab = logits.size(-1)
        batch = logits.size(0) // m
        lv = logits.reshape(batch, m, -1, vocab)  # a view for the usual contiguous logits
        row_len = lv.size(2)
        if target.numel() == batch * row_len:  # one copy's target, shared by all copies
            tgt = target.reshape(batch, 1, row_len).expand(batch, m, row_len)
        else:
            tgt = target.reshape(batch, m, row_len)
        pad = tgt.eq(ignore_index)
        ls_mask_all = (~pad).to(torch.float32 if logits.dtype != torch.float64 else torch.float64)
        kl_mask_all = ls_mask_all[:, :1]  # copy 0's padding decides the KL rows
        kl_scale = alpha / (m * (m - 1)) if m > 1 else 0.0
        kl_weight_all = kl_mask_all * kl_scale
        safe_tgt = tgt.masked_fill(pad, 0)  # ignore_index may be out of range (e.g. -100)

        acc_dtype = ls_mask_all.dtype
        lp_t_rows = torch.zeros(batch, m, row_len, dtype=acc_dtype, device=logits.device)
        lp_sum_rows = torch.zeros(batch, m, row_len, dtype=acc_dtype, device=logits.device)
        neg_kl_rows = torch.zeros(batch, 1, row_len, dtype=acc_dtype, device=logits.device)
        outputs = _Rows(lp_t=lp_t_rows, lp_sum=lp_sum_rows, neg_kl=neg_kl_rows)
        grad = torch.empty_like(lv, memory_format=torch.contiguous_format) if need_grad else None

        eps_i = epsilon / (vocab - 1)
        coef = 1.0 - epsilon - eps_i  # weight of the one-hot part of w
        sum_w = coef + vocab * eps_i  # sum_v w
        kl_grad = m > 1 and alpha != 0
        # One sync per call (not per tile): can the per-row eps term be shared by copies?
        same_masks = tgt.stride(1) == 0 or bool(pad.eq(pad[:, :1]).all())
        ls_row = ls_mask_all.unsqueeze(-1)  # (B, m, R, 1)
        kl_row = kl_weight_all.unsqueeze(-1)  # (B, 1, R, 1)
        consts = _Rows(
            kl_grad=kl_grad, same_masks=same_masks, kl_weight=kl_row,
            neg_e=ls_row * -eps_i, sum_w=ls_row * sum_w,
            b_base=ls_row * sum_w + kl_row * m,
            onehot=(ls_row * -coef).to(logits.dtype),
        )
        tiles = _tiles(batch, row_len, chunk_rows)
        eager = _EagerChunk(min(chunk_rows, batch * row_len), vocab, m, logits.dtype, logits.device)
        for b, r in tiles:
            eager(lv[b, :, r], safe_tgt[b, :, r], consts.slice(b, r), outputs.slice(b, r),
                  grad[b, :, r] if need_grad else None)

        # Padding rows are masked here, once, not per tile.
        nll_loss = -(lp_t_rows * ls_mask_all).sum()
        ls_loss = coef * nll_loss - eps_i * (lp_sum_rows * ls_mask_all).sum()
        if m > 1:
            kl_loss = -(neg_kl_rows * kl_mask_all).sum() / (m * (m - 1))
            loss = ls_loss + alpha * kl_loss
        else:
            kl_loss = neg_kl_rows.new_zeros(())
            loss = ls_loss
        ctx.grad_buf = grad
        ctx.logits_shape = logits.shape
        ctx.mark_non_differentiable(nll_loss, kl_loss)
        return loss, nll_loss, kl_loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _grad_nll, _grad_kl):
        grad = ctx.grad_buf
        if _graph_is_kept():
            grad = grad * grad_loss  # retain_graph: the buffer must survive this backward
        else:
            ctx.grad_buf = None  # hand the buffer over: no second logits-sized tensor
            # Skip a full pass over the buffer for the usual grad_loss == 1 (checked only
            # on CPU, where reading the value costs no device sync).
            if grad_loss.device.type != "cpu" or float(grad_loss) != 1.0:
                grad.mul_(grad_loss)
        return grad.view(ctx.logits_shape), None, None, None, None, None, None, None


def _graph_is_kept() -> bool:
    """True when this backward runs with retain_graph=True (or when that cannot be told)."""
    probe = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:
        return True


def fused_rdrop_loss(
    logits: Tensor,
    target: Tensor,
    num_passes: int,
    alpha: float,
    epsilon: float,
    ignore_index: int,
    chunk_rows: Optional[int] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """R-Drop loss from logits: (loss, nll_loss, kl_loss), like ``rdrop_loss_reference``.

    logits: (m * B, *rest, V), copies interleaved along dim 0 (copy k of row b is row
    b * m + k), any float dtype (each chunk is upcast to float32); e.g. (m * N, V) or
    the model's (m * B, T, V) as it comes (do not flatten it: flattening moves the copy
    index inside). target: one copy (B, *rest), or all copies (m * B, *rest).
    Returns float32 scalars (float64 for float64 logits):
      loss = sum_k LS-NLL_k + alpha * KL_m   (differentiable w.r.t. logits)
      nll_loss = sum_k NLL_k, kl_loss = KL_m (no gradient)
    chunk_rows: token rows per copy per chunk (default: ~2 MB of float32 per CPU thread).
    Backward hands the gradient buffer itself to autograd (scaled in place) unless the
    graph is retained (retain_graph=True), where it returns a scaled copy instead.
    """
    check_copies(logits, target, num_passes)
    vocab = logits.size(-1)
    if vocab < 2:
        raise ValueError(f"logits need a vocabulary of at least 2, got V={vocab}")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon (label smoothing) must be in [0, 1), got {epsilon}")
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(num_passes, vocab, logits.device.type)
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    return _FusedRDropLoss.apply(
        logits, target, num_passes, float(alpha), float(epsilon), ignore_index, chunk_rows,
        need_grad,
    )
