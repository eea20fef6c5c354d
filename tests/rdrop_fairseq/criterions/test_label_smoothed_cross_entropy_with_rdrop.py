"""The criterion on a real (tiny) fairseq transformer, against fairseq's own LS-CE and the paper."""
import copy
import logging

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    label_smoothed_nll_loss,
)
from fairseq.logging import metrics

from helpers import copies_of, criterion_step, paper_kl, tiny_batch, tiny_transformer
from rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import RDropLabelSmoothedCrossEntropyCriterion

EPS = 0.1


def make(task, **kw):
    kw.setdefault("rdrop_impl", "reference")
    return RDropLabelSmoothedCrossEntropyCriterion(task, False, EPS, **kw)


def manual_rdrop(model, sample, m, alpha, pad, seed=123, prefix=0):
    """The paper's loss by hand: m copies of every sentence (each repeated in place, the
    plugin's layout), one forward, sum of each copy's LS-NLL + alpha * the paper's KL."""
    model.zero_grad()
    torch.manual_seed(seed)
    net_input = {k: v.repeat_interleave(m, dim=0) for k, v in sample["net_input"].items()}
    out = model(**net_input)
    lprobs = model.get_normalized_probs(out, log_probs=True)
    copies = [c[:, prefix:] for c in copies_of(lprobs, m)]  # copy k: rows k, m + k, ...
    target = sample["target"][:, prefix:]
    ls = nll = 0.0
    for c in copies:
        ls_k, nll_k = label_smoothed_nll_loss(c.reshape(-1, c.size(-1)), target.reshape(-1), EPS, pad)
        ls, nll = ls + ls_k, nll + nll_k
    kl = paper_kl(copies, target.eq(pad))
    loss = ls + alpha * kl
    loss.backward()
    manual_rdrop.last_ls = ls.detach()  # label-smoothed part of all m copies, for the logging check
    return loss.detach(), nll.detach(), kl.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("mode", ["alpha0_train", "eval"])
def test_plain_steps_equal_fairseq_label_smoothed_cross_entropy_exactly(task, mode):
    model = tiny_transformer(task)
    sample = tiny_batch(task)
    ours = make(task, rdrop_alpha=0.0 if mode == "alpha0_train" else 5.0, report_accuracy=True)
    theirs = LabelSmoothedCrossEntropyCriterion(task, False, EPS, report_accuracy=True)
    model.train(mode != "eval")
    a = criterion_step(ours, model, sample)
    b = criterion_step(theirs, model, sample)
    assert torch.equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[2] == b[2]  # identical logging outputs: no rdrop keys on plain steps
    assert all(torch.equal(x, y) for x, y in zip(a[3], b[3]))


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_rdrop_step_equals_the_paper_loss_by_hand(task, m, impl):
    model = tiny_transformer(task)
    sample = tiny_batch(task)
    original = copy.deepcopy(sample)
    crit = make(task, rdrop_alpha=5.0, rdrop_passes=m, rdrop_impl=impl, report_accuracy=True)
    loss, sample_size, log, grads = criterion_step(crit, model, sample)
    ref_loss, ref_nll, ref_kl, ref_grads = manual_rdrop(model, sample, m, 5.0, task.target_dictionary.pad())

    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    # absolute tolerance on the gradients' scale: AVX2/AVX-512 kernels round differently
    scale = max(r.abs().max().item() for r in ref_grads)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * scale)
    assert ref_kl > 0  # dropout made the copies differ
    torch.testing.assert_close(log["rdrop_kl_loss"].float(), ref_kl.float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(log["nll_loss"].float(), ref_nll.float() / m, rtol=1e-5, atol=1e-5)
    # logged loss: one copy's label-smoothed loss, without the KL (comparable with valid_loss);
    # rdrop_objective: the optimised value
    ref_ls_per_copy = manual_rdrop.last_ls / m
    torch.testing.assert_close(log["loss"].float(), ref_ls_per_copy.float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(log["rdrop_objective"].float(), ref_loss.float(), rtol=1e-5, atol=1e-5)
    assert log["rdrop_sample_size"] == sample_size
    assert sample_size == sample["ntokens"] == log["ntokens"] == log["rdrop_ntokens"]
    assert log["nsentences"] == sample["target"].size(0)
    assert log["total"] == m * sample["ntokens"]
    # the caller's sample is untouched (the built-in overwrites its net_input)
    for k, v in original["net_input"].items():
        assert torch.equal(sample["net_input"][k], v)


def test_sentence_avg_sample_size_is_one_copy(task):
    crit = RDropLabelSmoothedCrossEntropyCriterion(task, True, EPS, rdrop_alpha=1.0)
    sample = tiny_batch(task, bsz=5)
    _, sample_size, _ = crit(tiny_transformer(task).train(), sample)
    assert sample_size == 5


def test_ignore_prefix_size_works_with_rdrop(task):
    model = tiny_transformer(task)
    sample = tiny_batch(task)
    crit = make(task, rdrop_alpha=3.0, ignore_prefix_size=2)
    loss, _, _, grads = criterion_step(crit, model, sample)
    ref_loss, _, _, ref_grads = manual_rdrop(model, sample, 2, 3.0, task.target_dictionary.pad(), prefix=2)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_builtin_breaks_on_ignore_prefix_size(task):
    """Why we mask instead of slicing: the built-in's KL pad mask has the sliced length."""
    # fairseq 0.12.2 (the last PyPI release) has no built-in R-Drop criterion: skip there
    builtin = pytest.importorskip(
        "fairseq.criterions.label_smoothed_cross_entropy_with_rdrop",
        reason="this fairseq has no built-in label_smoothed_cross_entropy_with_rdrop",
    )
    Builtin = builtin.RdropLabelSmoothedCrossEntropyCriterion

    crit = Builtin(task, False, EPS, ignore_prefix_size=2, rdrop_alpha=3.0)
    with pytest.raises(RuntimeError):
        crit(tiny_transformer(task).train(), tiny_batch(task))


def count_forward_rows(model):
    rows = []
    model.encoder.register_forward_hook(lambda mod, inp, out: rows.append(out["encoder_out"][0].size(1)))
    return rows


def test_k_step_schedule_and_warmup(task):
    model = tiny_transformer(task).train()
    sample = tiny_batch(task, bsz=4)
    rows = count_forward_rows(model)
    crit = make(task, rdrop_alpha=4.0, rdrop_every=2, rdrop_warmup_updates=10)
    for update, expect_rows in [(0, 4), (1, 4), (4, 8), (5, 4), (12, 8)]:
        crit.set_num_updates(update)
        _, _, log = crit(model, sample)
        assert rows[-1] == expect_rows, update
        assert ("rdrop_kl_loss" in log) == (expect_rows == 8)
    assert crit.alpha_at(0) == 0.0 and crit.alpha_at(5) == 2.0 and crit.alpha_at(50) == 4.0

    # the warmed-up alpha is what the loss uses: update 4 -> alpha 1.6
    crit.set_num_updates(4)
    loss, _, _, _ = criterion_step(crit, model, sample)
    ref_loss, _, _, _ = manual_rdrop(model, sample, 2, 1.6, task.target_dictionary.pad())
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)


def test_update_count_comes_from_fairseqs_trainer_meter(task):
    crit = make(task, rdrop_alpha=1.0, rdrop_every=3)
    metrics.reset()
    assert crit.current_num_updates() == 0
    metrics.log_scalar("num_updates", 7, weight=0)  # what Trainer.set_num_updates does
    assert crit.current_num_updates() == 7
    # a resume: Trainer.load_checkpoint logs the count, then metrics.load_state_dict swaps
    # the "default" aggregator for an inactive copy; later updates must still be seen
    metrics.load_state_dict(metrics.state_dict())
    metrics.log_scalar("num_updates", 8, weight=0)
    assert crit.current_num_updates() == 8
    crit.set_num_updates(9)  # an explicit call wins
    assert crit.current_num_updates() == 9
    metrics.reset()


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"rdrop_alpha": -1.0}, "--rdrop-alpha"),
        ({"rdrop_alpha": float("nan")}, "--rdrop-alpha"),
        ({"rdrop_passes": 0}, "--rdrop-passes"),
        ({"rdrop_every": 0}, "--rdrop-every"),
        ({"rdrop_warmup_updates": -5}, "--rdrop-warmup-updates"),
        ({"rdrop_alpha": 5.0, "rdrop_passes": 1}, "--rdrop-passes"),
    ],
)
def test_bad_options_name_the_option(task, kwargs, option):
    with pytest.raises(ValueError, match=option):
        make(task, **kwargs)


def test_zero_dropout_warns_that_kl_is_zero(task, caplog):
    model = tiny_transformer(task, dropout=0.0).train()
    crit = make(task, rdrop_alpha=1.0)
    with caplog.at_level(logging.WARNING):
        _, _, log = crit(model, tiny_batch(task))
    assert "identically zero" in caplog.text
    assert abs(float(log["rdrop_kl_loss"])) < 1e-5


def test_reduce_metrics_kl_is_per_rdrop_token_base2(task):
    logs = [
        {"loss": 10.0, "nll_loss": 4.0, "ntokens": 10, "sample_size": 10, "nsentences": 2,
         "rdrop_kl_loss": 2.0, "rdrop_ntokens": 10},
        {"loss": 6.0, "nll_loss": 3.0, "ntokens": 10, "sample_size": 10, "nsentences": 2},  # k-step plain
    ]
    with metrics.aggregate() as agg:
        RDropLabelSmoothedCrossEntropyCriterion.reduce_metrics(logs)
    import math

    assert agg.get_smoothed_value("rdrop_kl_loss") == pytest.approx(2.0 / 10 / math.log(2), abs=1e-4)
    assert agg.get_smoothed_value("nll_loss") == pytest.approx(7.0 / 20 / math.log(2), abs=1e-3)


def tiny_adaptive_transformer(task):
    from argparse import Namespace

    from fairseq.models.transformer import TransformerModel, base_architecture

    args = Namespace(
        arch="transformer", encoder_layers=1, decoder_layers=1, encoder_embed_dim=16,
        decoder_embed_dim=16, encoder_ffn_embed_dim=32, decoder_ffn_embed_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, dropout=0.3,
        adaptive_softmax_cutoff="12,24", adaptive_softmax_dropout=0.1,
        max_source_positions=64, max_target_positions=64,
    )
    base_architecture(args)
    torch.manual_seed(0)
    return TransformerModel.build_model(args, task)


def test_plain_softmax_detection(task):
    from rdrop_fairseq.model_checks import has_plain_softmax_output

    assert has_plain_softmax_output(tiny_transformer(task))
    assert not has_plain_softmax_output(tiny_adaptive_transformer(task))
    crit = make(task, rdrop_alpha=1.0, rdrop_impl="fused")
    with pytest.raises(ValueError, match="--rdrop-impl fused"):
        crit(tiny_adaptive_transformer(task).train(), tiny_batch(task))


def test_adaptive_softmax_log_probs_are_fairseqs_full_distribution_and_differentiable(task):
    from rdrop_fairseq.log_probs import normalized_log_probs

    model = tiny_adaptive_transformer(task).eval()  # eval: no adaptive-softmax dropout
    sample = tiny_batch(task)
    out = model(**sample["net_input"])
    ours = normalized_log_probs(model, out)
    with torch.no_grad():
        theirs = model.get_normalized_probs(out, log_probs=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.exp().sum(-1), torch.ones(ours.shape[:-1]), rtol=1e-5, atol=1e-5)

    # and R-Drop trains through it (auto picks the reference path), matching the formula
    model.train()
    crit = make(task, rdrop_alpha=2.0, rdrop_impl="auto")
    loss, _, log, grads = criterion_step(crit, model, sample)
    assert float(log["rdrop_kl_loss"]) > 0 and all(torch.isfinite(g).all() for g in grads)


def test_rdrop_compile_is_a_documented_no_op_that_warns_once(task, caplog):
    """Old command lines and YAMLs with --rdrop-compile / rdrop_compile still load; the
    loss is the eager fused one, and the user is told once that the flag does nothing."""
    import rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop as criterion_mod
    from rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import RDropLabelSmoothedCrossEntropyConfig

    assert "no effect" in RDropLabelSmoothedCrossEntropyConfig.__dataclass_fields__[
        "rdrop_compile"].metadata["help"]
    criterion_mod._compile_warned = False
    model = tiny_transformer(task).train()
    with caplog.at_level(logging.WARNING):
        on = [make(task, rdrop_alpha=5.0, rdrop_impl="fused", rdrop_compile=True) for _ in range(2)]
    assert caplog.text.count("--rdrop-compile has no effect") == 1
    off = make(task, rdrop_alpha=5.0, rdrop_impl="fused")
    a, b = criterion_step(on[0], model, tiny_batch(task)), criterion_step(off, model, tiny_batch(task))
    assert torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[3], b[3]))
