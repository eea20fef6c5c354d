"""The fused, chunked R-Drop loss against the plain reference and against autograd."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from helpers import copies_of
from rdrop_torch.fused import default_chunk_rows, fused_rdrop_loss
from rdrop_torch.token_loss import rdrop_loss_reference

PAD = 1


def make_batch(m, n, vocab, seed, scale=3.0, pad_every=4):
    """Logits of m interleaved copies (m * n, V): copy k of row r is row r*m + k."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(m * n, vocab, generator=gen) * scale
    target = torch.randint(2, vocab, (n,), generator=gen)
    target[1::pad_every] = PAD
    return logits, target


def run_reference(logits, target, m, alpha, eps):
    """Reference loss on log_softmax of the (upcast) logits, and its autograd gradient."""
    x = logits.detach().to(torch.promote_types(logits.dtype, torch.float32)).requires_grad_()
    loss, nll, kl = rdrop_loss_reference(torch.log_softmax(x, -1), target, m, alpha, eps, PAD)
    loss.backward()
    return loss.detach(), nll.detach(), kl.detach(), x.grad


def run_fused(logits, target, m, alpha, eps, scale=1.0, **kw):
    x = logits.detach().clone().requires_grad_()
    loss, nll, kl = fused_rdrop_loss(x, target, m, alpha, eps, PAD, **kw)
    (loss * scale).backward()
    return loss.detach(), nll, kl, x.grad


def assert_rel(actual, expected, rtol):
    """Relative to the largest |expected| entry (elementwise relative error is ill-posed at 0)."""
    actual, expected = actual.double(), expected.double()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


@pytest.mark.parametrize("m,eps,alpha", list(itertools.product([1, 2, 3, 4], [0.0, 0.1], [0.0, 5.0])))
def test_matches_reference(m, eps, alpha):
    logits, target = make_batch(m, 37, 50, seed=m)  # 37 rows: ragged for chunks of 8
    ref = run_reference(logits, target, m, alpha, eps)
    got = run_fused(logits, target, m, alpha, eps, chunk_rows=8)
    for name, a, b in zip(["loss", "nll", "kl", "grad"], got, ref):
        assert_rel(a, b, 1e-5), name
    assert got[0].requires_grad is False and got[1].dtype == torch.float32
    if m > 1:
        assert got[2] > 0  # the copies differ, so the KL is really there


def test_kl_against_explicit_pairs():
    """Independent of loss.py: KL_m as the mean over ordered pairs of F.kl_div."""
    for m in (2, 3):
        logits, target = make_batch(m, 20, 30, seed=10 + m)
        lp = copies_of(torch.log_softmax(logits, -1), m)
        keep = target.ne(PAD)
        pairs = [
            F.kl_div(lp[j][keep], lp[i][keep], log_target=True, reduction="sum")  # KL(P_i||P_j)
            for i in range(m) for j in range(m) if i != j
        ]
        expected = torch.stack(pairs).sum() / (m * (m - 1))
        _, _, kl = fused_rdrop_loss(logits, target, m, 1.0, 0.1, PAD, chunk_rows=7)
        assert_rel(kl, expected, 1e-5)
        if m == 2:  # the paper's alpha * 1/2 (KL(P1||P2) + KL(P2||P1))
            assert_rel(kl, (pairs[0] + pairs[1]) / 2, 1e-5)


def test_per_copy_targets_with_different_padding():
    m, n = 3, 25
    logits, target = make_batch(m, n, 40, seed=3)
    full = target.repeat_interleave(m)
    full[2 * m + 1] = PAD  # padding only in copy 1 of row 2: its NLL drops, the KL row stays
    full[5 * m + 2] = PAD  # and in copy 2 of row 5
    ref = run_reference(logits, full, m, 2.0, 0.1)
    got = run_fused(logits, full, m, 2.0, 0.1, chunk_rows=4)
    for a, b in zip(got, ref):
        assert_rel(a, b, 1e-5)


@pytest.mark.parametrize("m", [2, 3])
def test_gradcheck_float64(m):
    logits, target = make_batch(m, 5, 6, seed=20 + m, pad_every=3)
    x = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z: fused_rdrop_loss(z, target, m, 2.0, 0.1, PAD, chunk_rows=2)[0], (x,)
    )


def test_padding_rows_get_zero_loss_and_gradient():
    m, n, vocab = 2, 16, 30
    logits, target = make_batch(m, n, vocab, seed=5)
    pad_rows = target.eq(PAD).repeat_interleave(m)
    _, _, _, grad = run_fused(logits, target, m, 5.0, 0.1, chunk_rows=5)
    assert pad_rows.any() and torch.all(grad[pad_rows] == 0)
    assert torch.all(grad[~pad_rows].abs().sum(-1) > 0)
    # Whatever the padded rows hold, the loss does not change.
    garbage = logits.clone()
    garbage[pad_rows] = torch.randn(int(pad_rows.sum()), vocab) * 50
    a = fused_rdrop_loss(logits, target, m, 5.0, 0.1, PAD)
    b = fused_rdrop_loss(garbage, target, m, 5.0, 0.1, PAD)
    for x, y in zip(a, b):
        assert_rel(x, y, 1e-6)


@pytest.mark.parametrize("dtype,scale,tol", [
    (torch.float16, 3.0, 2e-3), (torch.float16, 1e4, 2e-3), (torch.bfloat16, 3.0, 2e-2),
])
def test_half_precision_logits(dtype, scale, tol):
    m = 2
    logits, target = make_batch(m, 33, 64, seed=7, scale=1.0)
    logits = (logits.clamp(-1, 1) * scale).to(dtype)  # scale 1e4: within fp16's range
    got = run_fused(logits, target, m, 5.0, 0.1, chunk_rows=4)
    ref = run_reference(logits, target, m, 5.0, 0.1)  # fp32 on the same (upcast) values
    assert all(torch.isfinite(t).all() for t in got)
    assert got[3].dtype == dtype
    for a, b in zip(got[:3], ref[:3]):
        assert_rel(a, b, 1e-5)  # the chunk is upcast exactly: the loss is the fp32 loss
    assert_rel(got[3], ref[3], tol)  # the gradient is rounded to the logits dtype


def test_chunk_size_does_not_change_result():
    m = 3
    logits, target = make_batch(m, 29, 40, seed=9)
    one = run_fused(logits, target, m, 5.0, 0.1, chunk_rows=1)
    big = run_fused(logits, target, m, 5.0, 0.1, chunk_rows=1000)
    for a, b in zip(one, big):
        assert_rel(a, b, 1e-6)


def test_default_chunk_spans_several_chunks():
    m, vocab = 2, 5000
    rows = default_chunk_rows(m, vocab)
    n = 2 * rows + 3
    logits, target = make_batch(m, n, vocab, seed=11)
    got = run_fused(logits, target, m, 1.0, 0.1)
    ref = run_reference(logits, target, m, 1.0, 0.1)
    for a, b in zip(got, ref):
        assert_rel(a, b, 1e-5)


def test_grad_output_scales_gradient():
    logits, target = make_batch(2, 19, 30, seed=12)
    _, _, _, g1 = run_fused(logits, target, 2, 5.0, 0.1)
    _, _, _, g3 = run_fused(logits, target, 2, 5.0, 0.1, scale=3.0)
    assert_rel(g3, 3 * g1, 1e-6)


def test_retain_graph_backward_twice():
    logits, target = make_batch(2, 19, 30, seed=13)
    x = logits.clone().requires_grad_()
    loss = fused_rdrop_loss(x, target, 2, 5.0, 0.1, PAD)[0]
    g1, = torch.autograd.grad(loss, x, retain_graph=True)
    g2, = torch.autograd.grad(loss * 2, x)
    assert_rel(g2, 2 * g1, 1e-6)


@pytest.mark.parametrize("chunk_rows", [2, 4, 7, 8, 100])
def test_3d_logits_and_2d_target(chunk_rows):
    """The model's (m*B, T, V) with copies interleaved per sentence (row b*m + k), against
    the same numbers laid out per token, (m*N, V); chunks of whole sentences (T <= chunk)
    and pieces of one sentence (T > chunk) both."""
    m, b, t, vocab = 2, 3, 7, 25
    logits, target = make_batch(m, b * t, vocab, seed=14)  # (N * m, V), token-interleaved
    shaped = torch.stack([c.view(b, t, vocab) for c in copies_of(logits, m)], 1).view(m * b, t, vocab)
    flat = run_fused(logits, target, m, 5.0, 0.1, chunk_rows=chunk_rows)
    got = run_fused(shaped, target.view(b, t), m, 5.0, 0.1, chunk_rows=chunk_rows)
    ref = run_reference(shaped, target.view(b, t), m, 5.0, 0.1)
    for a, c, r in zip(flat[:3], got[:3], ref[:3]):
        assert_rel(a, c, 1e-6)
        assert_rel(c, r, 1e-5)
    assert got[3].shape == (m * b, t, vocab)
    assert_rel(got[3], ref[3], 1e-5)
    for k in range(m):
        assert_rel(copies_of(got[3], m)[k].reshape(-1, vocab), copies_of(flat[3], m)[k], 1e-6)


def test_no_grad_forward_matches():
    logits, target = make_batch(2, 21, 30, seed=15)
    with_grad = run_fused(logits, target, 2, 5.0, 0.1)
    with torch.no_grad():
        no_grad = fused_rdrop_loss(logits.clone().requires_grad_(), target, 2, 5.0, 0.1, PAD)
    assert not no_grad[0].requires_grad
    for a, b in zip(no_grad, with_grad[:3]):
        assert_rel(a, b, 1e-6)


def test_bad_input_is_named():
    logits, target = make_batch(2, 10, 20, seed=16)
    with pytest.raises(ValueError, match="num_passes"):
        fused_rdrop_loss(logits[:19], target, 2, 1.0, 0.1, PAD)
    with pytest.raises(ValueError, match=r"target has shape \(7,\)"):
        fused_rdrop_loss(logits, target[:7], 2, 1.0, 0.1, PAD)
    with pytest.raises(ValueError, match="chunk_rows"):
        fused_rdrop_loss(logits, target, 2, 1.0, 0.1, PAD, chunk_rows=0)
    with pytest.raises(ValueError, match="epsilon"):
        fused_rdrop_loss(logits, target, 2, 1.0, 1.5, PAD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    logits, target = make_batch(3, 50, 100, seed=18)
    cpu = run_fused(logits, target, 3, 5.0, 0.1, chunk_rows=16)
    gpu = run_fused(logits.cuda(), target.cuda(), 3, 5.0, 0.1, chunk_rows=16)
    for a, b in zip(gpu, cpu):
        assert_rel(a.cpu(), b, 1e-5)
    half = run_fused(logits.cuda().half(), target.cuda(), 3, 5.0, 0.1)
    assert_rel(half[0].cpu(), run_reference(logits.half(), target, 3, 5.0, 0.1)[0], 1e-5)
