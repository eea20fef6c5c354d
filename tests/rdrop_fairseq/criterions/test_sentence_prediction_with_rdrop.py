"""sentence_prediction_with_rdrop on a tiny real RoBERTa, against fairseq's own sentence_prediction
(torch.equal when R-Drop is off) and the paper's loss written by hand (interleaved copies, one
forward); the multi-label head's F1 metrics (its task's label files: tests/rdrop_fairseq/tasks/)."""
import copy
import itertools
from argparse import Namespace

import pytest
import torch
import torch.nn.functional as F
from fairseq.criterions.sentence_prediction import SentencePredictionConfig, SentencePredictionCriterion
from fairseq.data import Dictionary
from fairseq.logging import metrics
from fairseq.tasks.sentence_prediction import SentencePredictionConfig as TaskConfig
from fairseq.tasks.sentence_prediction import SentencePredictionTask

from helpers import criterion_step
from rdrop_fairseq.tasks.sentence_prediction_multilabel import MultiLabelSentencePredictionTask
from rdrop_fairseq.criterions.sentence_prediction_with_rdrop import (
    SentencePredictionWithRDropConfig,
    SentencePredictionWithRDropCriterion,
)

HEAD = "sentence_classification_head"
B, NUM = 4, 3


def make_task(kind):
    d = Dictionary()
    for i in range(30):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    cfg = TaskConfig(data="-", num_classes=1 if kind == "regression" else NUM,
                     regression_target=kind == "regression", classification_head_name=HEAD,
                     seed=1, max_positions=32)
    if kind == "multilabel":
        names = [f"l{i}" for i in range(NUM)]
        labels = Dictionary()
        for n in names:
            labels.add_symbol(n)
        return MultiLabelSentencePredictionTask(cfg, d, labels, names)
    labels = Dictionary()  # GLUE-style label names "0", "1", ... (fairseq's report options parse them)
    for i in range(NUM):
        labels.add_symbol(str(i))
    return SentencePredictionTask(cfg, d, labels)


def make_model(task, kind, dropout=0.3, seed=0):
    from fairseq.models.roberta.model import RobertaModel, base_architecture

    args = Namespace(arch="roberta", encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                     encoder_attention_heads=2, dropout=dropout, attention_dropout=0.0,
                     activation_dropout=0.0, pooler_dropout=dropout, max_positions=32,
                     tokens_per_sample=32)
    base_architecture(args)
    torch.manual_seed(seed)
    model = RobertaModel.build_model(args, task)
    model.register_classification_head(HEAD, num_classes=1 if kind == "regression" else NUM)
    return model


def make_batch(kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 30, (B, 7), generator=g)
    src[:, 0] = 0  # <s>
    src[-1, 5:] = 1  # padding on the last sentence
    if kind == "classification":
        target = torch.tensor([0, 2, 1, 2])
    elif kind == "regression":
        target = torch.tensor([[0.1], [0.9], [0.4], [0.6]])
    else:
        target = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 1], [0, 1, 0]])
    return {"id": torch.arange(B), "net_input": {"src_tokens": src, "src_lengths": src.ne(1).sum(1)},
            "target": target, "ntokens": int(src.ne(1).sum()), "nsentences": B}


def ours(task, kind, **kw):
    cfg = SentencePredictionWithRDropConfig(classification_head_name=HEAD,
                                            regression_target=kind == "regression", **kw)
    return SentencePredictionWithRDropCriterion(cfg, task)


def fairseqs(task, kind, **kw):
    cfg = SentencePredictionConfig(classification_head_name=HEAD, regression_target=kind == "regression", **kw)
    return SentencePredictionCriterion(cfg, task)


def assert_same_logs(a, b):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        assert (torch.equal(va, vb) if torch.is_tensor(va) else va == vb), k


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("mode", ["alpha0", "one_pass", "eval"])
def test_plain_steps_equal_fairseq_sentence_prediction_exactly(kind, mode):
    task = make_task(kind)
    model = make_model(task, kind)
    sample = make_batch(kind)
    kw = {"alpha0": dict(rdrop_alpha=0.0), "one_pass": dict(rdrop_alpha=0.0, rdrop_passes=1),
          "eval": dict(rdrop_alpha=1.0)}[mode]
    report = dict(report_pearson_and_spearman=True) if kind == "regression" else dict(report_mcc=True)
    # only the report options this fairseq's sentence_prediction has (fairseq 0.12.2 has none)
    report = {k: v for k, v in report.items() if k in SentencePredictionConfig.__dataclass_fields__}
    model.train(mode != "eval")
    a = criterion_step(ours(task, kind, **kw, **report), model, sample)
    b = criterion_step(fairseqs(task, kind, **report), model, sample)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert all(torch.equal(x, y) for x, y in zip(a[3], b[3])) and len(a[3]) == len(b[3]) > 0
    assert_same_logs(a[2], b[2])


def test_eval_runs_one_copy_only():
    task = make_task("classification")
    model = make_model(task, "classification")
    seen = []
    model.encoder.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].size(0)))
    model.eval()
    ours(task, "classification", rdrop_alpha=1.0, rdrop_passes=3)(model, make_batch("classification"))
    model.train()
    ours(task, "classification", rdrop_alpha=1.0, rdrop_passes=3)(model, make_batch("classification"))
    assert seen == [B, 3 * B]


def by_hand(model, sample, kind, m, alpha, seed=123):
    """The paper's loss: copies interleaved (row b*m + k), one forward, summed data loss of every
    copy + alpha/(m(m-1)) * the pairwise divergence, written with F.kl_div / plain formulas."""
    model.zero_grad()
    torch.manual_seed(seed)
    src = sample["net_input"]["src_tokens"].repeat_interleave(m, 0)
    lengths = sample["net_input"]["src_lengths"].repeat_interleave(m, 0)
    out, _ = model(src, src_lengths=lengths, features_only=True, classification_head_name=HEAD)
    t = sample["target"]
    copies = [out[k::m] for k in range(m)]
    if kind == "classification":
        data = sum(F.cross_entropy(c, t, reduction="sum") for c in copies)
        div = sum(F.kl_div(F.log_softmax(copies[j], -1), F.log_softmax(copies[i], -1),
                           reduction="sum", log_target=True)
                  for i, j in itertools.permutations(range(m), 2))
    elif kind == "regression":
        data = sum(((c.view(-1) - t.view(-1)) ** 2).sum() for c in copies)
        div = sum(0.5 * ((copies[i] - copies[j]) ** 2).sum() for i, j in itertools.permutations(range(m), 2))
    else:
        data = sum(F.binary_cross_entropy_with_logits(c, t, reduction="sum") for c in copies)
        p = [torch.sigmoid(c) for c in copies]
        div = sum((p[i] * (p[i] / p[j]).log() + (1 - p[i]) * ((1 - p[i]) / (1 - p[j])).log()).sum()
                  for i, j in itertools.permutations(range(m), 2))
    div = div / (m * (m - 1))
    loss = data + alpha * div
    loss.backward()
    return loss.detach(), data.detach(), div.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", ["classification", "regression", "multilabel"])
@pytest.mark.parametrize("m", [2, 3])
def test_rdrop_step_is_the_papers_loss_on_interleaved_copies(kind, m):
    task = make_task(kind)
    model = make_model(task, kind)
    sample = make_batch(kind)
    before = copy.deepcopy(sample)
    alpha = 0.8
    model.train()
    loss, sample_size, log, grads = criterion_step(ours(task, kind, rdrop_alpha=alpha, rdrop_passes=m), model, sample)
    ref_loss, ref_data, ref_div, ref_grads = by_hand(model, sample, kind, m, alpha)
    assert ref_div.item() > 1e-4  # dropout made the copies differ: the term is being tested
    scale = ref_loss.abs().item()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6 * scale)
    gscale = max(g.abs().max().item() for g in ref_grads)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * gscale)
    assert sample_size == B and log["sample_size"] == B and log["nsentences"] == B
    # logged loss: the data loss of ONE copy (comparable with the baseline and valid_loss)
    torch.testing.assert_close(log["loss"], ref_data / m, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(log["rdrop_kl_loss"].double(), ref_div.double(), rtol=1e-4, atol=1e-7)
    # the caller's sample is untouched
    for k in ("src_tokens", "src_lengths"):
        assert torch.equal(sample["net_input"][k], before["net_input"][k])
    assert torch.equal(sample["target"], before["target"])


def test_forced_divergence_is_used():
    task = make_task("multilabel")
    model = make_model(task, "multilabel", dropout=0.0)  # no dropout: identical copies, zero term
    model.train()
    _, _, log, _ = criterion_step(ours(task, "multilabel", rdrop_alpha=1.0, rdrop_divergence="softmax"), model,
                                  make_batch("multilabel"))
    assert abs(log["rdrop_kl_loss"].item()) < 1e-6
    crit = ours(task, "multilabel", rdrop_alpha=1.0, rdrop_divergence="softmax")
    assert crit.divergence == "softmax"
    assert ours(make_task("classification"), "classification", rdrop_divergence="sigmoid").divergence == "sigmoid"


def test_option_errors_name_the_option():
    with pytest.raises(ValueError, match="--rdrop-passes"):
        ours(make_task("classification"), "classification", rdrop_alpha=1.0, rdrop_passes=1)
    with pytest.raises(ValueError, match="--rdrop-divergence"):
        ours(make_task("regression"), "regression", rdrop_divergence="softmax")
    if "report_mcc" in SentencePredictionConfig.__dataclass_fields__:  # not in fairseq 0.12.2
        with pytest.raises(ValueError, match="--report-mcc"):
            ours(make_task("multilabel"), "multilabel", report_mcc=True)


def test_k_step_schedule_is_the_shared_one():
    task = make_task("classification")
    model = make_model(task, "classification")
    crit = ours(task, "classification", rdrop_alpha=1.0, rdrop_every=2)
    model.train()
    crit.set_num_updates(1)
    assert "rdrop_kl_loss" not in crit(model, make_batch("classification"))[2]
    crit.set_num_updates(2)
    assert "rdrop_kl_loss" in crit(model, make_batch("classification"))[2]


def test_multilabel_eval_reports_f1_and_exact_match_from_summed_counts():
    task = make_task("multilabel")
    model = make_model(task, "multilabel")
    model.eval()
    crit = ours(task, "multilabel", rdrop_alpha=1.0)
    halves = [make_batch("multilabel", seed=s) for s in (1, 2)]
    logs, logits = [], []
    for sample in halves:
        logs.append(crit(model, sample)[2])
        with torch.no_grad():
            logits.append(model(**sample["net_input"], features_only=True, classification_head_name=HEAD)[0])
    pred = torch.cat(logits) > 0
    gold = torch.cat([s["target"] for s in halves]).bool()
    sklearn = pytest.importorskip("sklearn.metrics")
    summed = {k: logs[0][k] + logs[1][k] for k in logs[0]}  # what workers' sums look like
    with metrics.aggregate() as agg:
        SentencePredictionWithRDropCriterion.reduce_metrics([summed])
        vals = agg.get_smoothed_values()
    assert vals["micro_f1"] == pytest.approx(100 * sklearn.f1_score(gold, pred, average="micro"), abs=0.01)
    present = (gold | pred).any(0)
    macro = sklearn.f1_score(gold[:, present], pred[:, present], average="macro")
    assert vals["macro_f1"] == pytest.approx(100 * macro, abs=0.01)
    assert vals["exact_match"] == pytest.approx(100 * (pred == gold).all(1).float().mean().item(), abs=0.01)
    assert not any(k.startswith("_") for k in vals)  # the raw counts stay out of the printed line
