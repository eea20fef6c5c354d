"""rdrop_torch.token_loss against independent references written plainly from the paper."""
import pytest
import torch
import torch.nn.functional as F

from helpers import copies_of, paper_kl
from rdrop_torch.token_loss import label_smoothed_nll_loss, multi_pass_kl, rdrop_loss_reference

PAD = 1


def make_inputs(m, n=37, v=23, dtype=torch.float64, seed=0):
    """Logits of m interleaved copies, (m * n, V): copy k of row r is row r*m + k."""
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(m * n, v, generator=g, dtype=dtype)).requires_grad_()
    target = torch.randint(2, v, (n,), generator=g)
    target[::5] = PAD  # padding rows
    return logits, target


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_reference_matches_paper_formula(m, eps):
    fairseq_ls = pytest.importorskip("fairseq.criterions.label_smoothed_cross_entropy")
    logits, target = make_inputs(m)
    lprobs = F.log_softmax(logits, -1)
    alpha = 5.0
    loss, nll, kl = rdrop_loss_reference(lprobs, target, m, alpha, eps, PAD)

    ls_expected, nll_expected = fairseq_ls.label_smoothed_nll_loss(
        lprobs, target.repeat_interleave(m), eps, ignore_index=PAD
    )
    kl_expected = paper_kl(copies_of(lprobs, m), target.eq(PAD))
    torch.testing.assert_close(kl.double(), kl_expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nll, nll_expected)
    torch.testing.assert_close(loss, ls_expected + alpha * kl_expected, rtol=1e-5, atol=1e-6)

    # gradients of both against the plain formula
    g_ours, = torch.autograd.grad(loss, logits)
    lprobs2 = F.log_softmax(logits, -1)
    ref = fairseq_ls.label_smoothed_nll_loss(lprobs2, target.repeat_interleave(m), eps, ignore_index=PAD)[0]
    ref = ref + alpha * paper_kl(copies_of(lprobs2, m), target.eq(PAD))
    g_ref, = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)


def test_m2_is_half_symmetric_kl_of_the_paper():
    logits, target = make_inputs(2)
    lp = F.log_softmax(logits, -1)
    p, q = lp[0::2], lp[1::2]  # the two copies of every row, interleaved
    keep = target.ne(PAD)
    sym = ((p.exp() - q.exp()) * (p - q)).sum(-1)[keep].sum()  # sum (p-q)(log p - log q)
    torch.testing.assert_close(multi_pass_kl(lp, 2, ~keep).double(), 0.5 * sym, rtol=1e-6, atol=1e-8)


def test_label_smoothing_matches_fairseq_unreduced():
    fairseq_ls = pytest.importorskip("fairseq.criterions.label_smoothed_cross_entropy")
    logits, target = make_inputs(1)
    lp = F.log_softmax(logits, -1)
    for reduce in (True, False):
        ours = label_smoothed_nll_loss(lp, target, 0.1, ignore_index=PAD, reduce=reduce)
        theirs = fairseq_ls.label_smoothed_nll_loss(lp, target, 0.1, ignore_index=PAD, reduce=reduce)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b.view_as(a))


@pytest.mark.parametrize("m", [2, 3])
def test_gradcheck_float64(m):
    logits, target = make_inputs(m, n=6, v=7)

    def f(x):
        return rdrop_loss_reference(F.log_softmax(x, -1), target, m, 3.0, 0.1, PAD)[0]

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-5)


def test_padding_gets_zero_loss_and_gradient():
    m = 3
    logits, target = make_inputs(m, dtype=torch.float32)
    loss = rdrop_loss_reference(F.log_softmax(logits, -1), target, m, 5.0, 0.1, PAD)[0]
    grad, = torch.autograd.grad(loss, logits)
    pad_rows = target.eq(PAD).repeat_interleave(m)
    assert torch.count_nonzero(grad[pad_rows]) == 0
    assert torch.count_nonzero(grad[~pad_rows]) > 0
    # changing the logits of padding rows changes nothing
    logits2 = logits.detach().clone()
    logits2[pad_rows] = torch.randn_like(logits2[pad_rows]) * 10
    loss2 = rdrop_loss_reference(F.log_softmax(logits2, -1), target, m, 5.0, 0.1, PAD)[0]
    torch.testing.assert_close(loss.detach(), loss2)


def test_identical_copies_have_zero_kl_and_m_times_the_single_loss():
    logits, target = make_inputs(1)
    lp1 = F.log_softmax(logits, -1)
    single, nll1, _ = rdrop_loss_reference(lp1, target, 1, 0.0, 0.1, PAD)
    loss, nll, kl = rdrop_loss_reference(lp1.repeat_interleave(3, 0), target, 3, 5.0, 0.1, PAD)
    assert abs(kl.item()) < 1e-6
    torch.testing.assert_close(loss, 3 * single, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(nll, 3 * nll1)


def test_kl_is_float32_for_half_inputs():
    logits, target = make_inputs(2, dtype=torch.float32)
    lp16 = F.log_softmax(logits.detach(), -1).to(torch.bfloat16)
    kl = multi_pass_kl(lp16, 2, target.eq(PAD))
    assert kl.dtype == torch.float32 and torch.isfinite(kl)


def test_wrong_target_size_is_a_clear_error():
    logits, target = make_inputs(2)
    with pytest.raises(ValueError, match="target has"):
        rdrop_loss_reference(F.log_softmax(logits, -1), target[:-1], 2, 1.0, 0.1, PAD)
    with pytest.raises(ValueError, match="not divisible by num_passes=2"):
        rdrop_loss_reference(F.log_softmax(logits[:-1], -1), target, 2, 1.0, 0.1, PAD)
    small, flat = make_inputs(2, n=6)
    with pytest.raises(ValueError, match=r"target has shape \(6,\), expected \(2, 3\)"):
        # the model's (m*B, T, V) needs the (B, T) target, not a flattened one
        rdrop_loss_reference(F.log_softmax(small, -1).view(4, 3, -1), flat, 2, 1.0, 0.1, PAD)


@pytest.mark.parametrize("m", [2, 3])
def test_model_shaped_output_pairs_copies_of_each_sentence(m):
    """(m*B, T, V) as a model returns it for interleaved input: copy k of sentence b is
    row b*m + k; the loss is the per-copy paper formula, with the (B, T) target."""
    fairseq_ls = pytest.importorskip("fairseq.criterions.label_smoothed_cross_entropy")
    b, t, v = 3, 5, 11
    g = torch.Generator().manual_seed(4)
    copies = [torch.randn(b, t, v, generator=g, dtype=torch.float64) for _ in range(m)]
    target = torch.randint(2, v, (b, t), generator=g)
    target[-1, 3:] = PAD
    out = torch.stack(copies, dim=1).reshape(m * b, t, v)  # built here, by the definition
    loss, nll, kl = rdrop_loss_reference(F.log_softmax(out, -1), target, m, 2.0, 0.1, PAD)
    lps = [F.log_softmax(c, -1) for c in copies]
    ls = sum(fairseq_ls.label_smoothed_nll_loss(lp, target, 0.1, ignore_index=PAD)[0] for lp in lps)
    torch.testing.assert_close(kl, paper_kl(lps, target.eq(PAD)))
    torch.testing.assert_close(loss, ls + 2.0 * paper_kl(lps, target.eq(PAD)))
