"""adaptive_loss_with_rdrop on a real (tiny) adaptive-softmax transformer_lm.

References: fairseq's own ``adaptive_loss`` (plain steps, bit for bit), the
formula of ``rdrop_torch.adaptive_softmax`` written out by hand with per-pair
F.kl_div (R-Drop steps), and the full-vocabulary distribution of
``normalized_log_probs`` (the chain rule the approximation starts from).
"""
import math
import re
from argparse import Namespace

import pytest
import torch
import torch.nn.functional as F
from fairseq.criterions.adaptive_loss import AdaptiveLoss
from fairseq.logging import metrics

from helpers import COMMON, USER_DIR, copies_of, criterion_step, last_train_stats, run_cli
from rdrop_fairseq.criterions.adaptive_loss_with_rdrop import AdaptiveLossWithRDrop, AdaptiveLossWithRDropConfig
from rdrop_fairseq.log_probs import normalized_log_probs
from rdrop_torch.adaptive_softmax import adaptive_kl, adaptive_nll
from rdrop_torch.token_loss import rdrop_loss_reference

CUTOFF = [10, 20]  # with a 40-word dictionary: head 10 + 2 clusters, tails [10, 20) and [20, 40)
PAD = 1


@pytest.fixture
def lm_task():
    from fairseq.data import Dictionary
    from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

    d = Dictionary()
    for i in range(40 - len(d)):
        d.add_symbol(f"w{i}")
    assert d.pad() == PAD
    return LanguageModelingTask(LanguageModelingConfig(), d)


def tiny_lm(task, dropout=0.3):
    from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture

    args = Namespace(
        arch="transformer_lm", decoder_layers=1, decoder_embed_dim=16, decoder_ffn_embed_dim=32,
        decoder_attention_heads=2, dropout=dropout, adaptive_softmax_cutoff=",".join(map(str, CUTOFF)),
        adaptive_softmax_dropout=0.1, tokens_per_sample=64, max_target_positions=64,
    )
    base_lm_architecture(args)
    torch.manual_seed(0)
    return TransformerLanguageModel.build_model(args, task)


def lm_batch(bsz=4, length=9, seed=1):
    """Targets in the head and both tails, fairseq's ignored tail words (cutoff + pad), padding."""
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randint(4, 40, (bsz, length), generator=g)
    tgt[0, :4] = torch.tensor([5, 12, 25, 39])
    tgt[1, :2] = torch.tensor([CUTOFF[0] + PAD, CUTOFF[1] + PAD])  # tail target == pad in fairseq
    tgt[-1, 6:] = PAD
    src = torch.cat([torch.full((bsz, 1), 2), tgt[:, :-1]], 1)
    return {
        "id": torch.arange(bsz),
        "net_input": {"src_tokens": src, "src_lengths": torch.full((bsz,), length)},
        "target": tgt,
        "ntokens": int(tgt.ne(PAD).sum()),
        "nsentences": bsz,
    }


def reduced(criterion_cls, logs):
    with metrics.aggregate() as agg:
        criterion_cls.reduce_metrics(logs)
    return {k: agg.get_smoothed_value(k) for k in ("loss", "nll_loss", "ppl", "rdrop_kl_loss") if k in agg}


@pytest.mark.parametrize("mode", ["alpha0_train", "eval", "kstep_off_update", "warmup_update0"])
def test_plain_steps_equal_fairseq_adaptive_loss_exactly(lm_task, mode):
    model = tiny_lm(lm_task).train(mode != "eval")
    kwargs = {"alpha0_train": dict(rdrop_alpha=0.0), "eval": dict(rdrop_alpha=5.0),
              "kstep_off_update": dict(rdrop_alpha=5.0, rdrop_every=2),
              "warmup_update0": dict(rdrop_alpha=5.0, rdrop_warmup_updates=10)}[mode]
    ours = AdaptiveLossWithRDrop(lm_task, False, **kwargs)
    ours.set_num_updates(1 if mode == "kstep_off_update" else 0)
    a = criterion_step(ours, model, lm_batch())
    b = criterion_step(AdaptiveLoss(lm_task, False), model, lm_batch())
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert len(a[3]) == len(b[3]) and all(torch.equal(x, y) for x, y in zip(a[3], b[3]))
    # logged loss and ppl are adaptive_loss's (we add nll_loss, equal to loss here)
    ours_m, theirs_m = reduced(AdaptiveLossWithRDrop, [a[2]]), reduced(AdaptiveLoss, [b[2]])
    assert ours_m["loss"] == theirs_m["loss"] == ours_m["nll_loss"]
    assert ours_m["ppl"] == theirs_m["ppl"] and "rdrop_kl_loss" not in ours_m


def token_rows(hidden, m):
    """(m*B, T, H) model output for sentences repeated in place -> (B*T*m, H) rows with the
    m copies of every token next to each other (what the criterion feeds adaptive softmax)."""
    return torch.stack([c.reshape(-1, c.size(-1)) for c in copies_of(hidden, m)], 1).reshape(-1, hidden.size(-1))


def hand_written_rdrop(model, sample, m, alpha, seed=123):
    """sum_k adaptive NLL_k + alpha/(m(m-1)) sum_{i!=j} [KL(head_i||head_j) + sum_c KL(tail_c,i||tail_c,j)],
    with explicit row pairing; random draws in adaptive softmax's order (head dropout, then tails)."""
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(**{k: v.repeat_interleave(m, dim=0) for k, v in sample["net_input"].items()})
    asm = model.decoder.adaptive_softmax
    t = sample["target"].reshape(-1)
    n = t.numel()

    def row(k, r):  # copy k of token r among the m*n rows
        return r * m + k

    t_all = torch.stack([t] * m, 1).reshape(-1)
    x = asm.dropout_module(token_rows(out[0], m))
    lp_head = F.log_softmax(asm.head(x), -1)
    bounds = asm.cutoff  # [10, 20, 40]
    tails = []  # (lp_tail, {global row: tail row}) per cluster
    for c in range(len(bounds) - 1):
        rows = ((t_all >= bounds[c]) & (t_all < bounds[c + 1])).nonzero().squeeze(1)
        lp = F.log_softmax(asm.tail[c](x[rows]), -1)
        tails.append((lp, {g: r for r, g in enumerate(rows.tolist())}))

    nll = 0.0
    for g in range(m * n):
        w = int(t_all[g])
        if w == PAD:
            continue
        if w < bounds[0]:
            nll = nll - lp_head[g, w]
            continue
        c = next(c for c in range(len(bounds) - 1) if bounds[c] <= w < bounds[c + 1])
        nll = nll - lp_head[g, bounds[0] + c]
        if w - bounds[c] != PAD:  # fairseq's cross_entropy(ignore_index=pad) drops this one
            lp, where = tails[c]
            nll = nll - lp[where[g], w - bounds[c]]

    kl_head = kl_tail = 0.0
    keep = t.ne(PAD)
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            # F.kl_div(log q, log p, log_target) = sum p (log p - log q) = KL(p || q)
            hi = lp_head[[row(i, r) for r in range(n)]]
            hj = lp_head[[row(j, r) for r in range(n)]]
            kl_head = kl_head + F.kl_div(hj, hi, reduction="none", log_target=True).sum(-1)[keep].sum()
            for lp, where in tails:
                own = [r for r in range(n) if row(i, r) in where]
                if own:
                    pi = lp[[where[row(i, r)] for r in own]]
                    pj = lp[[where[row(j, r)] for r in own]]
                    kl_tail = kl_tail + F.kl_div(pj, pi, reduction="none", log_target=True).sum()
    kl = (kl_head + kl_tail) / (m * (m - 1))
    loss = nll + alpha * kl
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return loss.detach(), nll.detach(), kl.detach(), kl_head.detach() / (m * (m - 1)), grads


@pytest.mark.parametrize("m", [2, 3])
def test_rdrop_step_equals_the_formula_by_hand(lm_task, m):
    model = tiny_lm(lm_task).train()
    sample = lm_batch()
    crit = AdaptiveLossWithRDrop(lm_task, False, rdrop_alpha=2.0, rdrop_passes=m)
    loss, sample_size, log, grads = criterion_step(crit, model, sample)
    ref_loss, ref_nll, ref_kl, ref_kl_head, ref_grads = hand_written_rdrop(model, sample, m, 2.0)

    assert ref_kl_head > 0 and ref_kl > ref_kl_head  # dropout made copies differ, tails too
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log["nll_loss"], ref_nll / m, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log["rdrop_kl_loss"], ref_kl, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    assert sample_size == log["ntokens"] == log["rdrop_ntokens"] == sample["ntokens"]


def test_kl_components_against_full_distribution(lm_task):
    """Full KL (main criterion's path) >= 0 and equals KL(head) + sum_c P_head(c) KL(tail_c)
    (chain rule); the companion's head term is the head KL by hand, its tails use 1[t in c]."""
    m = 2
    model = tiny_lm(lm_task).train()
    sample = lm_batch()
    t = sample["target"].reshape(-1)
    n, keep = t.numel(), t.ne(PAD)
    with torch.no_grad():  # two copies that differ through the decoder's dropout
        torch.manual_seed(0)
        hidden = model(**{k: v.repeat_interleave(m, dim=0) for k, v in sample["net_input"].items()})[0]
    model.eval()  # adaptive softmax itself deterministic from here on
    asm = model.decoder.adaptive_softmax

    full = normalized_log_probs(model, (hidden,))  # (m*B, T, V), copies interleaved per sentence
    _, _, full_kl = rdrop_loss_reference(full, sample["target"], m, 1.0, 0.0, PAD)
    assert full_kl > 0

    per_copy = [c.reshape(n, -1) for c in copies_of(hidden, m)]  # copy k's hidden states, (n, H)
    lp_head = [F.log_softmax(asm.head(h), -1) for h in per_copy]
    tails = [[F.log_softmax(tail(h), -1) for h in per_copy] for tail in asm.tail]  # every row

    def kl_rows(lp, i, j):  # KL(copy i || copy j) per token
        return F.kl_div(lp[j], lp[i], reduction="none", log_target=True).sum(-1)

    head_kl = chain = indicator = 0.0
    for i, j in [(0, 1), (1, 0)]:
        head_kl = head_kl + kl_rows(lp_head, i, j)[keep].sum()
        for c, lp in enumerate(tails):
            in_c = (t >= asm.cutoff[c]) & (t < asm.cutoff[c + 1])
            chain = chain + (lp_head[i][:, asm.cutoff[0] + c].exp() * kl_rows(lp, i, j))[keep].sum()
            indicator = indicator + kl_rows(lp, i, j)[in_c].sum()
    torch.testing.assert_close(full_kl, (head_kl + chain) / 2, rtol=1e-5, atol=1e-6)

    logits, targets = asm(token_rows(hidden, m), t.repeat_interleave(m))
    ours_head, ours_tails = adaptive_kl(logits, targets[0], m, PAD)
    torch.testing.assert_close(ours_head, head_kl / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sum(ours_tails), indicator / 2, rtol=1e-5, atol=1e-6)
    assert abs(float((sum(ours_tails) - chain / 2).detach())) > 1e-4  # an approximation, not the same number


def test_nll_is_adaptive_losss(lm_task):
    model = tiny_lm(lm_task).eval()
    sample = lm_batch()
    theirs, _, _ = AdaptiveLoss(lm_task, False)(model, sample)
    out = model(**sample["net_input"])
    logits, targets = model.decoder.adaptive_softmax(out[0], sample["target"])
    assert torch.equal(adaptive_nll(logits, targets, PAD).reshape(1), theirs)


def test_k_step_and_warmup_schedule(lm_task):
    model = tiny_lm(lm_task).train()
    crit = AdaptiveLossWithRDrop(lm_task, False, rdrop_alpha=4.0, rdrop_every=2, rdrop_warmup_updates=10)
    for update, rdrop in [(0, False), (1, False), (4, True), (5, False), (12, True)]:
        crit.set_num_updates(update)
        assert ("rdrop_kl_loss" in crit(model, lm_batch())[2]) == rdrop, update
    crit.set_num_updates(4)  # alpha warmed to 1.6
    loss = criterion_step(crit, model, lm_batch())[0]
    torch.testing.assert_close(loss, hand_written_rdrop(model, lm_batch(), 2, 1.6)[0], rtol=1e-5, atol=1e-5)


def test_reduce_metrics_ppl_from_nll_and_kl_per_rdrop_token():
    logs = [{"loss": torch.tensor(30.0), "nll_loss": torch.tensor(10.0), "ntokens": 10, "sample_size": 10,
             "nsentences": 2, "rdrop_kl_loss": torch.tensor(4.0), "rdrop_ntokens": 10}]
    got = reduced(AdaptiveLossWithRDrop, logs)
    assert got["loss"] == pytest.approx(30 / 10 / math.log(2), abs=1e-3)
    assert got["nll_loss"] == pytest.approx(10 / 10 / math.log(2), abs=1e-3)
    assert got["ppl"] == pytest.approx(2 ** got["nll_loss"], rel=1e-3)
    assert got["rdrop_kl_loss"] == pytest.approx(4 / 10 / math.log(2), abs=1e-4)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"rdrop_alpha": -1.0}, "--rdrop-alpha"),
        ({"rdrop_alpha": float("inf")}, "--rdrop-alpha"),
        ({"rdrop_passes": 0}, "--rdrop-passes"),
        ({"rdrop_every": 0}, "--rdrop-every"),
        ({"rdrop_warmup_updates": -1}, "--rdrop-warmup-updates"),
        ({"rdrop_alpha": 1.0, "rdrop_passes": 1}, "--rdrop-passes"),
        ({"ddp_backend": "pytorch_ddp"}, "--ddp-backend"),
    ],
)
def test_bad_options_name_the_option(lm_task, kwargs, option):
    cfg = AdaptiveLossWithRDropConfig(sentence_avg=False, ddp_backend="legacy_ddp")
    for k, v in kwargs.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=option):
        AdaptiveLossWithRDrop.build_criterion(cfg, lm_task)


def test_model_without_adaptive_softmax_is_named(lm_task):
    from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture

    args = Namespace(arch="transformer_lm", decoder_layers=1, decoder_embed_dim=16, decoder_ffn_embed_dim=32,
                     decoder_attention_heads=2, tokens_per_sample=64, max_target_positions=64)
    base_lm_architecture(args)
    model = TransformerLanguageModel.build_model(args, lm_task)
    with pytest.raises(ValueError, match="--adaptive-softmax-cutoff"):
        AdaptiveLossWithRDrop(lm_task, False, rdrop_alpha=1.0)(model, lm_batch())


def test_fairseq_train_then_eval_lm(lm_bin, tmp_path):
    save = tmp_path / "ckpt"
    log = run_cli("fairseq-train", lm_bin, "--user-dir", USER_DIR, "--task", "language_modeling",
                  "--arch", "transformer_lm", "--decoder-layers", "1", "--decoder-embed-dim", "32",
                  "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2", "--dropout", "0.2",
                  "--adaptive-softmax-cutoff", "200,1000", "--tokens-per-sample", "32", "--max-tokens", "512",
                  "--criterion", "adaptive_loss_with_rdrop", "--rdrop-alpha", "1", "--ddp-backend", "legacy_ddp",
                  "--max-update", "3", "--save-dir", save, *COMMON)
    assert "AdaptiveLossWithRDrop" in log
    stats = last_train_stats(log)
    assert stats["num_updates"] == "3" and float(stats["rdrop_kl_loss"]) > 0
    # loss is one copy's NLL (comparable with valid_loss); rdrop_objective = 2 copies + alpha * KL
    assert float(stats["loss"]) == pytest.approx(float(stats["nll_loss"]), abs=2e-3)
    expected = 2 * float(stats["loss"]) + 1 * float(stats["rdrop_kl_loss"])
    assert float(stats["rdrop_objective"]) == pytest.approx(expected, abs=5e-3)
    assert float(stats["ppl"]) == pytest.approx(2 ** float(stats["nll_loss"]), rel=0.01)
    out = run_cli("fairseq-eval-lm", lm_bin, "--user-dir", USER_DIR, "--path", save / "checkpoint_last.pt",
                  "--tokens-per-sample", "32", "--context-window", "16", "--max-tokens", "512", "--cpu")
    ppl = float(re.search(r"Perplexity: ([\d.]+)", out).group(1))
    assert 1 < ppl < 1e6
