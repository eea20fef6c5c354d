"""Sentence-level R-Drop losses in plain PyTorch.

The model output for m copies is INTERLEAVED: row b*m + k holds copy k of sentence b
(``repeat_interleave(m, dim=0)`` of the batch). Every function sums over sentences,
the reduction fairseq's ``sentence_prediction`` uses, so alpha weighs the consistency
term against the data term exactly as in the sequence criterion:

    loss = sum_k data_loss(copy k) + alpha * consistency

    softmax  consistency = sum_b 1/(m(m-1)) sum_{i != j} KL(P_i || P_j)       (P = softmax(s))
    sigmoid  consistency = sum_b 1/(m(m-1)) sum_{i != j} sum_c KL(B_ic || B_jc) (B = Bernoulli(sigmoid(s_c)))
                         = sum_b 1/(m(m-1)) sum_{i < j} D(s_i, s_j),
             D(s, t) = sum_c (sigmoid(s_c) - sigmoid(t_c)) (s_c - t_c)  (the symmetric Bernoulli KL)
    mse      consistency = sum_b 1/(m(m-1)) sum_{i != j} 1/2 ||y_i - y_j||^2
                         (1/2 ||y_i - y_j||^2 = KL between unit-variance Gaussians at y_i, y_j)

For m = 2 each is alpha * 1/2 * (KL(1||2) + KL(2||1)) of its distribution, the paper's weight.
The pair sums use closed forms around the copies' mean (O(m), no cancellation):
    sum_{i,j} KL(P_i||P_j)              = m * sum_i sum_c p_ic (log p_ic - mean_j log p_jc)
    sum_{i,j} D(s_i, s_j)               = 2m * sum_i sum_c sigmoid(s_ic) (s_ic - mean_j s_jc)
    sum_{i,j} 1/2 ||y_i - y_j||^2       = m * sum_i ||y_i - mean_j y_j||^2
"""
import torch
import torch.nn.functional as F

HEAD_KINDS = ("classification", "regression", "multilabel")
DIVERGENCES = ("softmax", "sigmoid", "mse")
MULTILABEL_LOSSES = ("bce", "mlcce")


def resolve_divergence(kind, requested):
    """The consistency term for a head: ``auto`` -> softmax (single-label), sigmoid
    (multi-label), mse (regression). A regression output is not a distribution over
    classes, so forcing softmax/sigmoid on it is refused."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; expected one of {HEAD_KINDS}")
    if kind == "regression":
        if requested not in ("auto", "mse"):
            raise ValueError(
                f"--rdrop-divergence {requested} does not apply to a regression head "
                "(--regression-target): its outputs are real values, not class scores; use auto"
            )
        return "mse"
    if requested == "auto":
        return "sigmoid" if kind == "multilabel" else "softmax"
    if requested not in ("softmax", "sigmoid"):
        raise ValueError(
            f"--rdrop-divergence {requested} does not apply to a {kind} head; use auto, softmax or sigmoid"
        )
    return requested


def _up(x):
    """At least float32 (fairseq's choice for half-precision logits); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def _copies(x, m):
    """(B*m, ...) interleaved -> (B, m, ...)."""
    if x.size(0) % m != 0:
        raise ValueError(f"{x.size(0)} rows are not a multiple of m = {m} copies")
    return x.reshape(x.size(0) // m, m, *x.shape[1:])


# ----- consistency terms (unweighted; summed over sentences) ---------------------------------
def softmax_consistency(logits, m):
    """sum_b 1/(m(m-1)) sum_{i != j} KL(softmax(s_bi) || softmax(s_bj)); logits (B*m, C)."""
    lp = _copies(torch.log_softmax(_up(logits), dim=-1), m)  # (B, m, C)
    centred = lp - lp.mean(dim=1, keepdim=True)
    return m * (lp.exp() * centred).sum() / (m * (m - 1))


def sigmoid_consistency(logits, m):
    """sum_b 1/(m(m-1)) sum_{i < j} D(s_bi, s_bj), D the symmetric Bernoulli KL summed over labels."""
    s = _copies(_up(logits), m)
    centred = s - s.mean(dim=1, keepdim=True)
    all_pairs = 2 * m * (torch.sigmoid(s) * centred).sum()  # sum over ordered pairs i, j of D
    return 0.5 * all_pairs / (m * (m - 1))


def mse_consistency(outputs, m):
    """sum_b 1/(m(m-1)) sum_{i != j} 1/2 ||y_bi - y_bj||^2; outputs (B*m,) or (B*m, K)."""
    y = _copies(_up(outputs).reshape(outputs.size(0), -1), m)
    return m * (y - y.mean(dim=1, keepdim=True)).pow(2).sum() / (m * (m - 1))


CONSISTENCY = {"softmax": softmax_consistency, "sigmoid": sigmoid_consistency, "mse": mse_consistency}


# ----- data terms (summed over sentences) -----------------------------------------------------
def classification_loss(logits, targets):
    """fairseq's sentence_prediction CE: log_softmax in (at least) float32, nll summed."""
    lprobs = F.log_softmax(_up(logits), dim=-1)
    return F.nll_loss(lprobs, targets, reduction="sum")


def regression_loss(outputs, targets):
    """fairseq's sentence_prediction MSE, summed."""
    return F.mse_loss(_up(outputs).reshape(-1), targets.reshape(-1).to(_up(outputs).dtype), reduction="sum")


def bce_loss(logits, targets):
    """Binary cross-entropy with logits, summed over labels and sentences."""
    return F.binary_cross_entropy_with_logits(_up(logits), targets.to(_up(logits).dtype), reduction="sum")


def mlcce_loss(logits, targets):
    """Multi-label categorical CE: sum_b log(1 + sum_{neg} e^s) + log(1 + sum_{pos} e^-s).

    One softmax-like loss per sentence that ranks every positive label's score above 0
    and every negative's below 0, so the decision threshold is also logit > 0.
    """
    s = _up(logits)
    pos = targets.bool()
    neg_inf = torch.finfo(s.dtype).min
    zero = s.new_zeros(s.size(0), 1)  # the "1 +" inside each log
    neg_term = torch.logsumexp(torch.cat([s.masked_fill(pos, neg_inf), zero], dim=-1), dim=-1)
    pos_term = torch.logsumexp(torch.cat([(-s).masked_fill(~pos, neg_inf), zero], dim=-1), dim=-1)
    return (neg_term + pos_term).sum()


def data_loss(kind, outputs, targets, multilabel_loss="bce"):
    """Summed data loss of rows ``outputs`` against ``targets`` (one row each)."""
    if kind == "classification":
        return classification_loss(outputs, targets)
    if kind == "regression":
        return regression_loss(outputs, targets)
    if multilabel_loss == "bce":
        return bce_loss(outputs, targets)
    if multilabel_loss == "mlcce":
        return mlcce_loss(outputs, targets)
    raise ValueError(f"--multilabel-loss must be one of {MULTILABEL_LOSSES}, got {multilabel_loss!r}")


def sentence_rdrop_loss(outputs, targets, m, alpha, kind, divergence, multilabel_loss="bce"):
    """R-Drop loss of interleaved outputs (B*m, C) for targets of ONE copy (B, ...).

    Returns (loss, data, consistency): loss = data + alpha * consistency, data the summed
    data loss of all m copies, consistency unweighted (both summed over sentences).
    """
    if m < 2:
        raise ValueError(f"R-Drop needs m >= 2 copies, got {m}")
    if outputs.size(0) != targets.size(0) * m:
        raise ValueError(
            f"{outputs.size(0)} output rows for {targets.size(0)} sentences x {m} copies"
        )
    data = data_loss(kind, outputs, targets.repeat_interleave(m, dim=0), multilabel_loss)
    consistency = CONSISTENCY[divergence](outputs, m)
    return data + alpha * consistency, data, consistency


# ----- multi-label decisions -------------------------------------------------------------------
def multilabel_counts(logits, targets):
    """Per-label true positives, false positives, false negatives (long, (C,)) and the number
    of exact matches at the decision threshold logit > 0."""
    pred = logits.detach() > 0
    gold = targets.bool()
    tp = (pred & gold).sum(0)
    fp = (pred & ~gold).sum(0)
    fn = (~pred & gold).sum(0)
    exact = (pred == gold).all(dim=-1).sum()
    return tp, fp, fn, exact


def f1_scores(tp, fp, fn):
    """(micro-F1, macro-F1) in [0, 1] from per-label counts (sequences of numbers).

    F1 = 2tp / (2tp + fp + fn). Macro averages over the labels that occur in the gold
    set or the predictions; a label with neither has no defined F1 and is left out.
    """
    tp, fp, fn = (torch.as_tensor(x, dtype=torch.float64) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    micro = float(2 * tp.sum() / denom.sum()) if float(denom.sum()) > 0 else 0.0
    defined = denom > 0
    macro = float((2 * tp[defined] / denom[defined]).mean()) if bool(defined.any()) else 0.0
    return micro, macro
