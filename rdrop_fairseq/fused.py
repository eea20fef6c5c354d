"""The R-Drop loss fused with its own backward, computed from logits chunk by chunk.

Same meaning as ``rdrop_fairseq.loss.rdrop_loss_reference`` (read its docstring for
the loss), but it takes LOGITS and never builds a full-size log-prob tensor: it walks
over chunks of token rows (rows i..i+c of every copy together), upcasts only the chunk
to float32, takes ONE log_softmax per copy, and from it gets the label-smoothed NLL,
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

``compile=True`` (or env RDROP_FUSED_COMPILE=1) runs the per-chunk kernel through
``torch.compile`` on first use; the last chunk is padded to the fixed chunk size so
ragged batches never recompile, and any failure falls back to eager for good.
"""
import logging
import os
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

# Target size of one chunk's float32 working set (m copies x rows x V).  On CPU,
# benchmarks/bench_chunk.py found the time flat from 0.5 to 8 MB (chunks that stay in
# cache, per-op Python overhead amortised) and worse outside; see docs/performance.md.
# On a GPU a chunk must fill the device instead; the CUDA size is a guess, NOT measured.
DEFAULT_CHUNK_BYTES = 2 * 1024 * 1024
DEFAULT_CHUNK_BYTES_CUDA = 64 * 1024 * 1024
COMPILE_ENV = "RDROP_FUSED_COMPILE"

_compiled_kernel = None  # built on first use, never at import time
_compile_failed = False  # remembered so a broken compiler is tried only once


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


def _chunk_kernel(
    x: Tensor,
    target: Tensor,
    ls_mask: Tensor,
    kl_mask: Tensor,
    kl_weight: Tensor,
    epsilon: float,
    need_grad: bool,
    kl_grad: bool,
    grad_dtype: torch.dtype,
):
    """Loss terms and logits-gradient of one chunk, written out of place (for torch.compile).

    x: (m, c, V) logits of rows i..i+c of each copy; target: (m, c), padding already
    replaced by a valid index; ls_mask: (m, c) 1.0 where the NLL counts; kl_mask: (c,)
    1.0 where the KL counts; kl_weight: kl_mask * alpha / (m (m - 1)).
    Returns (grad (m, c, V) in grad_dtype or None, lp_t (m, c) = lp_k[t], lp_sum (m, c)
    = sum_v lp_k, kl (c,) = sum_{i != j} KL(P_i || P_j)); these three are not masked.
    ``_EagerChunk`` computes the same with in-place ops and reused scratch buffers.
    """
    m, c, vocab = x.shape
    lp = torch.log_softmax(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)
    lp_t = lp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    lp_sum = lp.sum(-1)
    p = lp.exp()
    a = m * lp - lp.sum(0)  # A_k = m lp_k - S
    ck = (p * a).sum(-1)  # (m, c)
    kl = ck.sum(0) if m > 1 else torch.zeros_like(kl_mask)
    if not need_grad:
        return None, lp_t, lp_sum, kl
    eps_i = epsilon / (vocab - 1)
    coef = 1.0 - epsilon - eps_i  # weight of the one-hot part of w
    ls_row = ls_mask.unsqueeze(-1)  # (m, c, 1)
    g = p * (ls_row * (coef + vocab * eps_i)) - ls_row * eps_i
    if m > 1 and kl_grad:
        k = kl_weight.view(1, c, 1)
        g = g + k * (p * (a - ck.unsqueeze(-1) + m) - p.sum(0))
    onehot = torch.arange(vocab, device=x.device) == target.unsqueeze(-1)  # fuses; no scatter
    g = g - onehot * (ls_row * coef)
    return g.to(grad_dtype), lp_t, lp_sum, kl


class _EagerChunk:
    """The same computation as ``_chunk_kernel`` with scratch buffers reused across chunks.

    Why: on CPU every fresh chunk-sized temporary is a fresh mmap whose pages fault in
    on first touch, which cost more than the arithmetic (2x in total when measured);
    here ~12 passes over the chunk write into three buffers allocated once per call,
    the gradient goes straight into the caller's buffer, and per-row constants and
    masks are built once per call, not per chunk.
    """

    def __init__(self, m: int, rows: int, vocab: int, dtype: torch.dtype, device):
        self.compute_dtype = torch.promote_types(dtype, torch.float32)
        size = m * rows * vocab
        self.lp = torch.empty(size, dtype=self.compute_dtype, device=device)
        self.p = torch.empty(size, dtype=self.compute_dtype, device=device)
        self.s = torch.empty(rows * vocab, dtype=self.compute_dtype, device=device)
        self.nck = torch.empty(m, rows, dtype=self.compute_dtype, device=device)

    def __call__(self, x, target, rows, out, grad_out):
        """x: (m, c, V) logits (each copy's rows contiguous); target (m, c); rows: the
        chunk's slices of the per-row constants (a _Rows); out: the chunk's
        slices of the per-row results, written in place: lp_t (m, c) = lp_k[t],
        lp_sum (m, c) = sum_v lp_k, neg_kl (c,) = -sum_{i != j} KL, all unmasked.
        grad_out: (m, c, V) view of the gradient buffer, or None."""
        m, c, vocab = x.shape
        lp = self.lp[: m * c * vocab].view(m, c, vocab)
        p = self.p[: m * c * vocab].view(m, c, vocab)
        for k in range(m):
            src = x[k]
            if src.dtype != self.compute_dtype:
                src = p[k].copy_(src)  # upcast only this chunk
            torch._log_softmax(src, -1, False, out=lp[k])
        torch.exp(lp, out=p)
        out.lp_t.copy_(lp.gather(-1, target.unsqueeze(-1)).squeeze(-1))
        torch.sum(lp, -1, out=out.lp_sum)
        s = self.s[: c * vocab].view(c, vocab)
        nck = self.nck[:, :c]
        if m > 1:
            torch.sum(lp, 0, out=s)
            neg_a = torch.add(s, lp, alpha=-m, out=lp)  # -A_k = S - m lp_k
            # -c_k = sum_v p_k (-A_k), one copy at a time through the free S buffer
            # (a batched bmm is 4x slower on CPU than mul + sum here).
            for k in range(m):
                torch.sum(torch.mul(p[k], neg_a[k], out=s), -1, out=nck[k])
            torch.sum(nck, 0, out=out.neg_kl)
        if grad_out is None:
            return
        if rows.kl_grad:
            k = rows.kl_weight.view(1, c, 1)
            # g = p * B + Q,  B = sum_w*ls + k*m + k*(-c_k) - k*(-A_k),  Q = -k*P - eps_i*ls
            r = torch.addcmul(rows.b_base, k, nck.unsqueeze(-1))
            b = torch.addcmul(r, neg_a, k, value=-1.0, out=lp)
            q = torch.sum(p, 0, out=s)  # P
            if rows.same_masks:  # Q = -e - k*P in one pass
                q = torch.addcmul(rows.neg_e[0], q, k[0], value=-1.0, out=s)
            else:
                q.mul_(-k[0])
            for j in range(m):
                torch.addcmul(q if rows.same_masks else q + rows.neg_e[j], b[j], p[j], out=grad_out[j])
        else:
            for j in range(m):
                torch.addcmul(rows.neg_e[j], p[j], rows.sum_w[j], out=grad_out[j])
        for j in range(m):
            grad_out[j].scatter_add_(-1, target[j].unsqueeze(-1), rows.onehot[j])


class _Rows:
    """Per-row tensors, built once per call and sliced per chunk (fewer small ops)."""

    def __init__(self, **tensors):
        self.__dict__.update(tensors)

    def slice(self, start, stop):
        return _Rows(**{
            k: (v[..., start:stop, :] if v.dim() == 3 else v[..., start:stop])
            if isinstance(v, Tensor) else v
            for k, v in self.__dict__.items()
        })


def _get_compiled_kernel():
    global _compiled_kernel
    if _compiled_kernel is None:
        _compiled_kernel = torch.compile(_chunk_kernel, dynamic=False)
    return _compiled_kernel


def _run_compiled(*args):
    """The compiled kernel's outputs, or None once compiling/running it has failed."""
    global _compile_failed
    if _compile_failed:
        return None
    try:
        return _get_compiled_kernel()(*args)
    except Exception as err:  # any compiler/toolchain problem: eager is always right
        _compile_failed = True
        logger.warning("rdrop fused loss: torch.compile failed, using eager from now on (%s)", err)
        return None


def _pad_rows(t: Tensor, rows: int) -> Tensor:
    """Pad the row dim (the last of (m, c) / (c,), the middle of (m, c, V)) with zeros."""
    dim = 1 if t.dim() == 3 else t.dim() - 1
    shape = list(t.shape)
    shape[dim] = rows - t.size(dim)
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


class _FusedRDropLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, m, alpha, epsilon, ignore_index, chunk_rows, use_compile, need_grad):
        vocab = logits.size(-1)
        flat = logits.reshape(-1, vocab)  # a view for the usual contiguous logits
        n = flat.size(0) // m
        lv = flat.view(m, n, vocab)
        tgt = target.reshape(-1)
        tgt = tgt.view(1, n).expand(m, n) if tgt.numel() == n else tgt.view(m, n)
        pad = tgt.eq(ignore_index)
        ls_mask_all = (~pad).to(torch.float32 if logits.dtype != torch.float64 else torch.float64)
        kl_mask_all = ls_mask_all[0]
        kl_scale = alpha / (m * (m - 1)) if m > 1 else 0.0
        kl_weight_all = kl_mask_all * kl_scale
        safe_tgt = tgt.masked_fill(pad, 0)  # ignore_index may be out of range (e.g. -100)

        acc_dtype = ls_mask_all.dtype
        lp_t_rows = torch.zeros(m, n, dtype=acc_dtype, device=logits.device)
        lp_sum_rows = torch.zeros(m, n, dtype=acc_dtype, device=logits.device)
        neg_kl_rows = torch.zeros(n, dtype=acc_dtype, device=logits.device)
        outputs = _Rows(lp_t=lp_t_rows, lp_sum=lp_sum_rows, neg_kl=neg_kl_rows)
        grad = torch.empty_like(lv, memory_format=torch.contiguous_format) if need_grad else None

        eps_i = epsilon / (vocab - 1)
        coef = 1.0 - epsilon - eps_i  # weight of the one-hot part of w
        sum_w = coef + vocab * eps_i  # sum_v w
        kl_grad = m > 1 and alpha != 0
        # One sync per call (not per chunk): can the per-row eps term be shared by copies?
        same_masks = tgt.stride(0) == 0 or bool(pad.eq(pad[0]).all())
        ls_row = ls_mask_all.unsqueeze(-1)  # (m, n, 1)
        consts = _Rows(
            kl_grad=kl_grad, same_masks=same_masks, kl_weight=kl_weight_all,
            neg_e=ls_row * -eps_i, sum_w=ls_row * sum_w,
            b_base=ls_row * sum_w + kl_weight_all.view(1, n, 1) * m,
            onehot=(ls_row * -coef).to(logits.dtype),
        )
        c = chunk_rows
        eager = None
        for start in range(0, n, c):
            stop = min(start + c, n)
            rows = stop - start
            out = None
            if use_compile:
                args = [
                    lv[:, start:stop],
                    safe_tgt[:, start:stop],
                    ls_mask_all[:, start:stop],
                    kl_mask_all[start:stop],
                    kl_weight_all[start:stop],
                ]
                # Fixed shapes AND strides (slices of the whole batch have N-dependent
                # strides): ragged batches never recompile.
                args = [_pad_rows(t, c) if rows < c else t.contiguous() for t in args]
                out = _run_compiled(*args, epsilon, need_grad, kl_grad, logits.dtype)
            if out is not None:
                g, lp_t, lp_sum, kl = out
                if need_grad:
                    grad[:, start:stop] = g[:, :rows]
                lp_t_rows[:, start:stop] = lp_t[:, :rows]
                lp_sum_rows[:, start:stop] = lp_sum[:, :rows]
                neg_kl_rows[start:stop] = -kl[:rows]
            else:
                if eager is None:
                    eager = _EagerChunk(m, min(c, n), vocab, logits.dtype, logits.device)
                eager(lv[:, start:stop], safe_tgt[:, start:stop], consts.slice(start, stop),
                      outputs.slice(start, stop), grad[:, start:stop] if need_grad else None)

        # Padding rows are masked here, once, not per chunk.
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
        return grad.view(ctx.logits_shape), None, None, None, None, None, None, None, None


def _graph_is_kept() -> bool:
    """True when this backward runs with retain_graph=True (or when that cannot be told)."""
    probe = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:
        return True


def _compile_requested(compile: Optional[bool]) -> bool:
    if compile is not None:
        return bool(compile)
    return os.environ.get(COMPILE_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def fused_rdrop_loss(
    logits: Tensor,
    target: Tensor,
    num_passes: int,
    alpha: float,
    epsilon: float,
    ignore_index: int,
    chunk_rows: Optional[int] = None,
    compile: Optional[bool] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """R-Drop loss from logits: (loss, nll_loss, kl_loss), like ``rdrop_loss_reference``.

    logits: (m * N, V) or (m * B, T, V), copy-major, any float dtype (each chunk is
    upcast to float32).  target: one copy (N,) / (B, T), or all copies (m * N,).
    Returns float32 scalars (float64 for float64 logits):
      loss = sum_k LS-NLL_k + alpha * KL_m   (differentiable w.r.t. logits)
      nll_loss = sum_k NLL_k, kl_loss = KL_m (no gradient)
    chunk_rows: rows per copy per chunk (default: ~2 MB of float32 per CPU thread).
    compile: use torch.compile for the chunk kernel (default: env RDROP_FUSED_COMPILE).
    Backward hands the gradient buffer itself to autograd (scaled in place) unless the
    graph is retained (retain_graph=True), where it returns a scaled copy instead.
    """
    m = num_passes
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"num_passes must be a positive int, got {m!r}")
    if logits.dim() < 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (..., V), got {tuple(logits.shape)} {logits.dtype}")
    vocab = logits.size(-1)
    if vocab < 2:
        raise ValueError(f"logits need a vocabulary of at least 2, got V={vocab}")
    rows = logits.numel() // vocab
    if rows % m != 0:
        raise ValueError(f"logits have {rows} rows, not divisible by num_passes={m}")
    n = rows // m
    if target.numel() not in (n, rows):
        raise ValueError(
            f"target has {target.numel()} rows, expected {n} (one copy) or {rows} (all {m} copies)"
        )
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon (label smoothing) must be in [0, 1), got {epsilon}")
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(m, vocab, logits.device.type)
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    return _FusedRDropLoss.apply(
        logits, target, m, float(alpha), float(epsilon), ignore_index, chunk_rows,
        _compile_requested(compile), need_grad,
    )
