"""sentence_loss.py against plainly written references: F.kl_div both ways over ordered pairs,
the Bernoulli-KL sum for the sigmoid divergence (and its equality with D), the pairwise MSE,
the multi-label losses written label by label; float64 gradcheck; m = 2 and 3."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rdrop_torch import sentence_loss as sl

B, C = 5, 4


def interleaved(m, cols=C, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B * m, cols, generator=g, dtype=dtype)).requires_grad_()


def copy(x, m, k):
    """Copy k of every sentence: rows k, m + k, 2m + k, ... (interleaved layout)."""
    return x[k::m]


def ref_softmax(x, m):
    total = 0.0
    for i, j in itertools.permutations(range(m), 2):
        lp_i = F.log_softmax(copy(x, m, i), -1)
        lp_j = F.log_softmax(copy(x, m, j), -1)
        # kl_div(input=log q, target=log p, log_target) = sum p (log p - log q) = KL(p || q)
        total = total + F.kl_div(lp_j, lp_i, reduction="sum", log_target=True)
    return total / (m * (m - 1))


def bernoulli_kl(p, q):
    return p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())


def ref_sigmoid(x, m):
    """1/(m(m-1)) sum_{i != j} sum_labels KL(Bernoulli_i || Bernoulli_j)."""
    total = 0.0
    for i, j in itertools.permutations(range(m), 2):
        total = total + bernoulli_kl(torch.sigmoid(copy(x, m, i)), torch.sigmoid(copy(x, m, j))).sum()
    return total / (m * (m - 1))


def ref_mse(y, m):
    total = 0.0
    for i, j in itertools.permutations(range(m), 2):
        total = total + 0.5 * (copy(y, m, i) - copy(y, m, j)).pow(2).sum()
    return total / (m * (m - 1))


@pytest.mark.parametrize("m", [2, 3])
def test_softmax_consistency_is_the_pairwise_kl(m):
    x = interleaved(m)
    got, want = sl.softmax_consistency(x, m), ref_softmax(x, m)
    assert got.item() > 0.1
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-6)


def test_softmax_consistency_m2_is_the_papers_half_sum():
    x = interleaved(2)
    p, q = F.log_softmax(copy(x, 2, 0), -1), F.log_softmax(copy(x, 2, 1), -1)
    paper = 0.5 * (F.kl_div(q, p, reduction="sum", log_target=True)
                   + F.kl_div(p, q, reduction="sum", log_target=True))
    torch.testing.assert_close(sl.softmax_consistency(x, 2).double(), paper, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m", [2, 3])
def test_sigmoid_consistency_is_the_bernoulli_kl_and_equals_d(m):
    x = interleaved(m)
    got = sl.sigmoid_consistency(x, m)
    torch.testing.assert_close(got.double(), ref_sigmoid(x, m), rtol=1e-5, atol=1e-6)
    # D(s, t) = sum (sigmoid(s) - sigmoid(t)) (s - t) is the symmetric Bernoulli KL:
    s, t = copy(x, m, 0), copy(x, m, 1)
    d = ((torch.sigmoid(s) - torch.sigmoid(t)) * (s - t)).sum()
    sym = (bernoulli_kl(torch.sigmoid(s), torch.sigmoid(t)) + bernoulli_kl(torch.sigmoid(t), torch.sigmoid(s))).sum()
    torch.testing.assert_close(d, sym, rtol=1e-10, atol=1e-10)
    if m == 2:  # the softmax case's weight: 1/2 (KL(1||2) + KL(2||1)) = D / 2
        torch.testing.assert_close(got.double(), 0.5 * d, rtol=1e-5, atol=1e-6)


def test_sigmoid_consistency_of_two_classes_matches_softmax_of_the_logit_difference():
    """A 2-class softmax over (0, s) is Bernoulli(sigmoid(s)): the two forms must agree."""
    x = interleaved(2, cols=1)
    two_class = torch.cat([torch.zeros_like(x), x], dim=-1)
    torch.testing.assert_close(sl.sigmoid_consistency(x, 2), sl.softmax_consistency(two_class, 2),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("cols", [1, 3])
def test_mse_consistency_is_the_pairwise_half_squared_difference(m, cols):
    y = interleaved(m, cols=cols)
    got = sl.mse_consistency(y.squeeze(-1) if cols == 1 else y, m)
    torch.testing.assert_close(got.double(), ref_mse(y, m), rtol=1e-5, atol=1e-6)


def test_identical_copies_have_zero_consistency():
    x = interleaved(1).detach().repeat_interleave(3, dim=0)
    for name, fn in sl.CONSISTENCY.items():
        assert abs(fn(x, 3).item()) < 1e-5, name


def test_copies_are_read_interleaved_not_stacked():
    """Stacked [x; x] rows would pair different sentences: the term must not vanish then."""
    base = interleaved(1).detach()
    stacked = torch.cat([base, base])  # copy k of sentence b at row k*B + b: wrong layout here
    assert sl.softmax_consistency(base.repeat_interleave(2, 0), 2).item() < 1e-6
    assert sl.softmax_consistency(stacked, 2).item() > 0.1


@pytest.mark.parametrize("m", [2, 3])
def test_classification_loss_is_summed_ce_of_every_copy_plus_alpha_kl(m):
    x = interleaved(m)
    t = torch.tensor([0, 3, 1, 2, 2])
    alpha = 0.7
    loss, data, kl = sl.sentence_rdrop_loss(x, t, m, alpha, "classification", "softmax")
    ce = sum(F.cross_entropy(copy(x, m, k), t, reduction="sum") for k in range(m))
    torch.testing.assert_close(data.double(), ce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss.double(), ce + alpha * ref_softmax(x, m), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [2, 3])
def test_regression_loss_is_summed_mse_plus_alpha_half_squared_differences(m):
    y = interleaved(m, cols=1)
    t = torch.linspace(0, 1, B, dtype=torch.float64)
    loss, data, _ = sl.sentence_rdrop_loss(y, t, m, 2.0, "regression", "mse")
    mse = sum(((copy(y, m, k).squeeze(-1) - t) ** 2).sum() for k in range(m))
    torch.testing.assert_close(loss.double(), mse + 2.0 * ref_mse(y, m), rtol=1e-5, atol=1e-5)


def multi_hot(seed=3):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(B, C, generator=g) < 0.4).double()
    t[0] = 0
    t[0, 1] = 1
    t[1] = 1  # every label positive
    return t


def test_bce_is_the_per_label_binary_ce_sum():
    x, t = interleaved(1), multi_hot()
    p = torch.sigmoid(x)
    ref = -(t * p.log() + (1 - t) * (1 - p).log()).sum()
    torch.testing.assert_close(sl.bce_loss(x, t).double(), ref, rtol=1e-6, atol=1e-6)


def test_mlcce_written_label_by_label():
    x, t = interleaved(1), multi_hot()
    ref = 0.0
    for b in range(B):
        neg = sum(math.exp(x[b, c].item()) for c in range(C) if t[b, c] == 0)
        pos = sum(math.exp(-x[b, c].item()) for c in range(C) if t[b, c] == 1)
        ref += math.log(1 + neg) + math.log(1 + pos)
    assert sl.mlcce_loss(x, t).item() == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("loss_name", ["bce", "mlcce"])
def test_multilabel_rdrop_loss(loss_name):
    m, x, t = 3, interleaved(3), multi_hot()
    loss, data, cons = sl.sentence_rdrop_loss(x, t, m, 0.5, "multilabel", "sigmoid", loss_name)
    fn = sl.bce_loss if loss_name == "bce" else sl.mlcce_loss
    per_copy = sum(fn(copy(x, m, k), t) for k in range(m))
    torch.testing.assert_close(data, per_copy, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss.double(), per_copy.double() + 0.5 * ref_sigmoid(x, m), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,div,loss_name", [
    ("classification", "softmax", "bce"), ("classification", "sigmoid", "bce"),
    ("multilabel", "sigmoid", "bce"), ("multilabel", "softmax", "mlcce"), ("regression", "mse", "bce"),
])
@pytest.mark.parametrize("m", [2, 3])
def test_gradcheck_float64(kind, div, loss_name, m):
    cols = 1 if kind == "regression" else C
    x = interleaved(m, cols=cols, scale=1.0)
    if kind == "classification":
        t = torch.tensor([0, 3, 1, 2, 2])
    elif kind == "regression":
        t = torch.linspace(0, 1, B, dtype=torch.float64)
    else:
        t = multi_hot()

    def f(inp):
        return sl.sentence_rdrop_loss(inp, t, m, 0.9, kind, div, loss_name)[0]

    assert f(x).dtype == torch.float64  # float64 in stays float64 (else gradcheck is meaningless)
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


def test_resolve_divergence():
    assert sl.resolve_divergence("classification", "auto") == "softmax"
    assert sl.resolve_divergence("multilabel", "auto") == "sigmoid"
    assert sl.resolve_divergence("multilabel", "softmax") == "softmax"
    assert sl.resolve_divergence("regression", "auto") == "mse"
    with pytest.raises(ValueError, match="--rdrop-divergence sigmoid .*regression"):
        sl.resolve_divergence("regression", "sigmoid")


def test_multilabel_counts_and_f1():
    logits = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 3.0], [0.5, 0.5, -2.0]])
    gold = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    tp, fp, fn, exact = sl.multilabel_counts(logits, gold)
    assert tp.tolist() == [1, 1, 2] and fp.tolist() == [1, 0, 0] and fn.tolist() == [1, 0, 0]
    assert int(exact) == 1
    micro, macro = sl.f1_scores(tp, fp, fn)
    assert micro == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert macro == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    sklearn = pytest.importorskip("sklearn.metrics")
    pred = (logits > 0).int().numpy()
    assert micro == pytest.approx(sklearn.f1_score(gold.int().numpy(), pred, average="micro"))
    assert macro == pytest.approx(sklearn.f1_score(gold.int().numpy(), pred, average="macro"))
    # A label absent from gold and predictions is left out of the macro average.
    assert sl.f1_scores([1, 0], [0, 0], [0, 0]) == (1.0, 1.0)
