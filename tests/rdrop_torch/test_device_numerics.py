"""Fused and reference R-Drop losses on a chosen device against the paper's formula.

The device comes from env RDROP_TEST_DEVICE (default ``cpu``); ``benchmarks/gpu_check.py
--device cuda`` runs this file with ``RDROP_TEST_DEVICE=cuda``.  Asking for CUDA where
there is none is an error at collection, never a skip.

The ground truth is the paper's loss written plainly, per token and per pair of copies,
in float64 on the CPU, on the SAME (already rounded) input values: sum_k LS-NLL_k +
alpha / (m (m - 1)) * sum_{i != j} KL(P_i || P_j) (for m = 2, alpha * 1/2 (KL(P1||P2) +
KL(P2||P1))), and its autograd gradient.  Inputs are float32, float16 and bfloat16
logits at scale 3 and at +-1e4 (fp16's range is 65504), m = 2 and 3, with padding.

Layout: the m copies' rows are passed to both functions in ONE arrangement, made by
``arrange`` below from per-copy tensors (m, N, ...); the test is therefore the same
whether the library stacks copies copy-major (copy k = rows k*N..) or interleaved (row
n*m + k).  Which of the two the library uses is read once from the plain CPU reference
in float64 (``library_layout``: exactly one arrangement must reproduce the formula), or
forced with env RDROP_TEST_LAYOUT; the fused loss must then agree in that same layout.
"""
import os

import pytest
import torch

from rdrop_torch.fused import fused_rdrop_loss
from rdrop_torch.token_loss import rdrop_loss_reference

PAD = 1
DEVICE = torch.device(os.environ.get("RDROP_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError("RDROP_TEST_DEVICE=cuda but torch.cuda.is_available() is False")
EPS32 = torch.finfo(torch.float32).eps
LOSS_RTOL = 16 * EPS32  # ~2e-6: the losses are accumulated in float32


# ---- the arrangement of m copies into rows -------------------------------------------
def _interleaved(copies):  # (m, N, ...) -> row n*m + k
    return copies.transpose(0, 1).reshape(-1, *copies.shape[2:])


def _copy_major(copies):  # (m, N, ...) -> row k*N + n
    return copies.reshape(-1, *copies.shape[2:])


LAYOUTS = {"interleaved": _interleaved, "copy-major": _copy_major}


def paper_loss(copies, target, alpha, eps):
    """The paper's loss, plainly: copies (m, N, V) logits (float64), target (N,)."""
    m, n, vocab = copies.shape
    lp = torch.log_softmax(copies, -1)
    keep = target.ne(PAD)
    rows = torch.arange(n)[keep]
    eps_i = eps / (vocab - 1)
    ls_loss, nll = 0.0, 0.0
    for k in range(m):  # fairseq's label_smoothed_nll_loss, copy by copy
        nll_k = -lp[k, rows, target[keep]].sum()
        smooth_k = -lp[k][keep].sum()
        ls_loss = ls_loss + (1.0 - eps - eps_i) * nll_k + eps_i * smooth_k
        nll = nll + nll_k
    kl = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:  # KL(P_i || P_j) = sum_v p_i (log p_i - log p_j), per token
                kl = kl + (lp[i].exp() * (lp[i] - lp[j])).sum(-1)[keep].sum()
    kl = kl / (m * (m - 1))
    return ls_loss + alpha * kl, nll, kl


_layout_cache = []


def library_layout():
    """The arrangement rdrop_loss_reference expects, checked against the formula in float64."""
    forced = os.environ.get("RDROP_TEST_LAYOUT")
    if forced:
        if forced not in LAYOUTS:
            raise ValueError(f"RDROP_TEST_LAYOUT must be one of {sorted(LAYOUTS)}, got {forced!r}")
        return forced
    if not _layout_cache:
        g = torch.Generator().manual_seed(0)
        copies = torch.randn(2, 3, 5, generator=g, dtype=torch.float64) * 2
        target = torch.tensor([2, 3, 4])
        want = paper_loss(copies, target, 1.0, 0.0)[2]
        matches = [
            name for name, arrange in LAYOUTS.items()
            if torch.allclose(
                rdrop_loss_reference(torch.log_softmax(arrange(copies), -1), arrange(target.expand(2, 3)),
                                     2, 1.0, 0.0, PAD)[2], want, rtol=1e-12, atol=0)
        ]
        assert len(matches) == 1, f"reference KL matches layouts {matches} (want exactly one)"
        _layout_cache.append(matches[0])
    return _layout_cache[0]


def arrange(copies):
    return LAYOUTS[library_layout()](copies)


def unarrange(rows, m):
    """Inverse of ``arrange``: rows (m * N, ...) -> (m, N, ...)."""
    if library_layout() == "interleaved":
        return rows.reshape(-1, m, *rows.shape[1:]).transpose(0, 1)
    return rows.reshape(m, -1, *rows.shape[1:])


# ---- inputs and the three computations ----------------------------------------------
def make_copies(m, n, vocab, dtype, scale, seed):
    """(m, N, V) logits in ``dtype`` (CPU) and a (N,) target with every 5th token padding."""
    g = torch.Generator().manual_seed(seed)
    copies = torch.randn(m, n, vocab, generator=g, dtype=torch.float64)
    if scale >= 100:  # +-scale at the extremes; clamped so fp16 never overflows
        copies = copies.clamp(-1, 1) * scale
    else:
        copies = copies * scale
    target = torch.randint(2, vocab, (n,), generator=g)
    target[1::5] = PAD
    return copies.to(dtype), target


def truth(copies, target, alpha, eps):
    """Formula and gradient in float64 on the CPU, on the rounded input values."""
    x = copies.detach().cpu().double().requires_grad_()
    loss, nll, kl = paper_loss(x, target.cpu(), alpha, eps)
    loss.backward()
    return loss.detach(), nll.detach(), kl.detach(), x.grad


def run_impl(impl, copies, target, alpha, eps, full_target):
    """One implementation on DEVICE, rows in the library's layout; results back in (m, N, V)."""
    m = copies.size(0)
    x = arrange(copies).to(DEVICE).requires_grad_()
    tgt = arrange(target.expand(m, -1)) if full_target else target
    tgt = tgt.to(DEVICE)
    if impl == "fused":
        loss, nll, kl = fused_rdrop_loss(x, tgt, m, alpha, eps, PAD)
    else:  # fairseq hands the criterion float32 log-probs whatever the model's dtype
        loss, nll, kl = rdrop_loss_reference(torch.log_softmax(x.float(), -1), tgt, m, alpha, eps, PAD)
    loss.backward()
    assert x.grad.dtype == copies.dtype and x.grad.device.type == DEVICE.type
    return loss.detach().cpu(), nll.detach().cpu(), kl.detach().cpu(), unarrange(x.grad.cpu(), m)


def grad_atol(dtype, scale, alpha, m, gmax):
    """Rounding the gradient to ``dtype`` (at most half an ulp of its largest entry; one ulp
    allowed) plus float32 work on log-probs of size ~2*scale: the KL gradient
    p_k (m lp_k - S - c_k) subtracts numbers of that size, weighted by alpha / (m - 1).
    Measured on CPU: 0.15 to 0.4 of this bound in every case."""
    return torch.finfo(dtype).eps * gmax + 4 * EPS32 * (1.0 + 2.0 * scale) * (1.0 + alpha / (m - 1))


CASES = [
    (dtype, scale, m)
    for dtype in (torch.float32, torch.float16, torch.bfloat16)
    for scale in (3.0, 1e4)
    for m in (2, 3)
]


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("dtype,scale,m", CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_matches_paper_formula(impl, dtype, scale, m):
    alpha, eps = 5.0, 0.1
    copies, target = make_copies(m, 37, 64, dtype, scale, seed=m + int(scale))
    want = truth(copies, target, alpha, eps)
    for full_target in (False, True):  # one copy's target, or every copy's in the layout
        got = run_impl(impl, copies, target, alpha, eps, full_target)
        assert all(torch.isfinite(t).all() for t in got), f"non-finite result on {DEVICE}"
        assert got[0].dtype == torch.float32
        for name, a, b in zip(("loss", "nll", "kl"), got[:3], want[:3]):
            # float32 sums of ~N*m*V log-probs of size ~scale: relative to the value itself
            # (measured on CPU: under 0.06 of this bound)
            torch.testing.assert_close(a.double(), b, rtol=LOSS_RTOL, atol=8 * EPS32 * scale, msg=name)
        assert want[2] > 0  # the copies differ: the KL term is really exercised
        g, g_want = got[3].double(), want[3]
        gmax = g_want.abs().max().item()
        torch.testing.assert_close(g, g_want, rtol=0, atol=grad_atol(dtype, scale, alpha, m, gmax))
        pad_rows = target.eq(PAD)
        assert torch.all(g[:, pad_rows] == 0)  # padding: zero gradient, whatever the device


def test_fused_spans_several_chunks():
    """More rows than one default chunk of this device, V = 32k on CUDA (the doc's size)."""
    from rdrop_torch import fused

    m = 2
    vocab = 32000 if DEVICE.type == "cuda" else 2000
    per_chunk = fused.default_chunk_rows(m, vocab, DEVICE.type) if hasattr(fused, "default_chunk_rows") else 64
    n = 2 * per_chunk + 3
    copies, target = make_copies(m, n, vocab, torch.float16 if DEVICE.type == "cuda" else torch.float32,
                                 3.0, seed=42)
    want = truth(copies, target, 1.0, 0.1)
    got = run_impl("fused", copies, target, 1.0, 0.1, full_target=False)
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a.double(), b, rtol=LOSS_RTOL, atol=8 * EPS32 * 3.0)
    gmax = want[3].abs().max().item()
    torch.testing.assert_close(got[3].double(), want[3], rtol=0,
                               atol=grad_atol(copies.dtype, 3.0, 1.0, m, gmax))


def test_device_is_the_one_asked_for():
    """Guards against a silent CPU fallback: the output lives on RDROP_TEST_DEVICE."""
    copies, target = make_copies(2, 5, 11, torch.float32, 3.0, seed=1)
    x = arrange(copies).to(DEVICE).requires_grad_()
    loss = fused_rdrop_loss(x, target.to(DEVICE), 2, 5.0, 0.1, PAD)[0]
    assert loss.device.type == DEVICE.type
    loss.backward()
    assert x.grad.device.type == DEVICE.type
