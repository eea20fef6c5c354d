"""R-Drop on the model families fairseq ships, end to end (fairseq-train, then
fairseq-generate / fairseq-eval-lm), and why the copies are interleaved.

fairseq sorts every batch longest source first, and its LSTM encoder packs the batch
with ``pack_padded_sequence(..., enforce_sorted=True)``. Duplicating a batch
copy-major, ``[x; x]``, restarts the order at row B and crashes it; repeating each row
in place (``batch_layout.duplicate_net_input``) keeps it. Each run below is a few
updates of a tiny model on real data slices (Multi30k, WikiText-2), seconds each.
"""
import re

import pytest
import torch

from helpers import COMMON, USER_DIR, copies_of, last_train_stats, paper_kl, run_cli, tiny_task
from rdrop_torch.layout import duplicate_net_input
from recipes.common.fairseq_flags import KEEP_LAST_BATCH

RDROP = ["--criterion", "label_smoothed_cross_entropy_with_rdrop", "--label-smoothing", "0.1",
         "--rdrop-alpha", "5"]

LSTM = ("--encoder-embed-dim 16 --encoder-hidden-size 16 --encoder-layers 1 "
        "--decoder-embed-dim 16 --decoder-hidden-size 16 --decoder-out-embed-dim 16 "
        "--decoder-layers 1").split()

TRANSLATION_ARCHS = {
    "lstm": LSTM,
    "lstm_bidirectional": ["--encoder-bidirectional", *LSTM],  # arch lstm, both directions
    "lstm_wiseman_iwslt_de_en": LSTM,
    "fconv": ["--encoder-embed-dim", "16", "--encoder-layers", "[(16, 3)] * 2",
              "--decoder-embed-dim", "16", "--decoder-layers", "[(16, 3)] * 2",
              "--decoder-out-embed-dim", "16"],
    "lightconv": ("--encoder-embed-dim 16 --encoder-conv-dim 16 --encoder-ffn-embed-dim 32 "
                  "--encoder-layers 1 --encoder-attention-heads 2 --encoder-kernel-size-list [3] "
                  "--decoder-embed-dim 16 --decoder-conv-dim 16 --decoder-ffn-embed-dim 32 "
                  "--decoder-layers 1 --decoder-attention-heads 2 --decoder-kernel-size-list [3]").split(),
}

LM_ARCHS = {
    "transformer_lm": ("--decoder-layers 1 --decoder-embed-dim 16 --decoder-ffn-embed-dim 32 "
                       "--decoder-attention-heads 2").split(),
    "lstm_lm": ("--decoder-layers 1 --decoder-embed-dim 16 --decoder-hidden-size 16 "
                "--decoder-out-embed-dim 16").split(),
}


def arch_name(key):
    return "lstm" if key == "lstm_bidirectional" else key


@pytest.mark.parametrize("arch", list(TRANSLATION_ARCHS))
def test_translation_arch_trains_with_rdrop_then_generates(translation_bin, tmp_path, arch):
    save = tmp_path / "ckpt"
    log = run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, "--arch", arch_name(arch),
                  *TRANSLATION_ARCHS[arch], "--dropout", "0.3", *RDROP, "--max-tokens", "1500",
                  "--max-update", "3", "--save-dir", save, "--no-save-optimizer-state",
                  "--no-epoch-checkpoints", *COMMON)
    stats = last_train_stats(log)
    # R-Drop ran on every update. (Its KL is logged to 4 decimals: near-uniform outputs of
    # a freshly initialised tiny LSTM can round it to 0; the loss itself is checked on an
    # LSTM in test_lstm_rdrop_loss_is_the_paper_formula.)
    assert stats["num_updates"] == "3" and float(stats["rdrop_kl_loss"]) >= 0
    out = run_cli("fairseq-generate", translation_bin, "--user-dir", USER_DIR,
                  "--path", save / "checkpoint_last.pt", "--beam", "2", "--max-len-b", "10",
                  "--gen-subset", "valid", "--max-tokens", "2000", "--cpu",
                  *KEEP_LAST_BATCH)
    assert len(re.findall(r"^H-\d+", out, flags=re.M)) == 60


@pytest.mark.parametrize("arch", list(LM_ARCHS))
def test_language_model_arch_trains_with_rdrop_then_eval_lm(lm_bin, tmp_path, arch):
    save = tmp_path / "ckpt"
    log = run_cli("fairseq-train", lm_bin, "--user-dir", USER_DIR, "--task", "language_modeling",
                  "--arch", arch, *LM_ARCHS[arch], "--dropout", "0.3", *RDROP,
                  "--tokens-per-sample", "32", "--max-tokens", "512", "--max-update", "3",
                  "--save-dir", save, "--no-save-optimizer-state", "--no-epoch-checkpoints", *COMMON)
    stats = last_train_stats(log)
    assert stats["num_updates"] == "3" and float(stats["rdrop_kl_loss"]) >= 0  # R-Drop ran
    out = run_cli("fairseq-eval-lm", lm_bin, "--user-dir", USER_DIR,
                  "--path", save / "checkpoint_last.pt", "--tokens-per-sample", "32",
                  "--max-tokens", "512", "--cpu")
    ppl = float(re.search(r"Perplexity: ([\d.]+)", out).group(1))
    assert 1 < ppl < 1e6


def sorted_batch(task, lengths, seed=0):
    """A translation batch as fairseq builds it: left-padded sources, longest first."""
    d = task.source_dictionary
    g = torch.Generator().manual_seed(seed)
    bsz, width = len(lengths), max(lengths)
    src = torch.full((bsz, width), d.pad())
    for i, n in enumerate(lengths):
        src[i, width - n:] = torch.randint(d.nspecial, len(d), (n,), generator=g)
        src[i, -1] = d.eos()
    prev = torch.randint(d.nspecial, len(d), (bsz, 4), generator=g)
    prev[:, 0] = d.eos()
    return {"src_tokens": src, "src_lengths": torch.tensor(lengths), "prev_output_tokens": prev}


def tiny_lstm(task):
    from argparse import Namespace

    from fairseq.models.lstm import LSTMModel, base_architecture

    args = Namespace(arch="lstm", encoder_embed_dim=8, encoder_hidden_size=8, decoder_embed_dim=8,
                     decoder_hidden_size=8, decoder_out_embed_dim=8, dropout=0.3,
                     max_source_positions=64, max_target_positions=64,
                     criterion="label_smoothed_cross_entropy_with_rdrop")
    base_architecture(args)
    torch.manual_seed(0)
    return LSTMModel.build_model(args, task).train()


def test_interleaved_copies_keep_fairseqs_length_order_and_copy_major_breaks_lstm():
    task = tiny_task()
    net_input = sorted_batch(task, [6, 5, 5, 3])
    model = tiny_lstm(task)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        model(**{k: torch.cat([v, v]) for k, v in net_input.items()})  # the old [x; x]
    for m in (2, 3):
        dup = duplicate_net_input(net_input, m, 4)
        lengths = dup["src_lengths"]
        assert torch.equal(lengths, torch.tensor([6, 5, 5, 3]).repeat_interleave(m))
        assert bool((lengths[:-1] >= lengths[1:]).all())  # non-increasing: what packing needs
        out = model(**dup)[0]
        assert out.shape[0] == 4 * m
        for k in range(m):  # copy k of sentence b is row b*m + k of every input
            assert torch.equal(dup["src_tokens"][k::m], net_input["src_tokens"])
            assert torch.equal(dup["prev_output_tokens"][k::m], net_input["prev_output_tokens"])


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_lstm_rdrop_loss_is_the_paper_formula(impl):
    """The criterion on an LSTM (packed, enforce_sorted) against the paper's loss written
    per copy: sum_k LS-NLL(copy k) + alpha * 1/2 (KL(P1||P2) + KL(P2||P1))."""
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss

    from rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import RDropLabelSmoothedCrossEntropyCriterion

    task = tiny_task()
    pad = task.target_dictionary.pad()
    model = tiny_lstm(task)
    with torch.no_grad():  # peaked outputs, so dropout moves them visibly
        model.decoder.fc_out.weight.mul_(100)
    net_input = sorted_batch(task, [6, 5, 5, 3])
    target = torch.cat([net_input["prev_output_tokens"][:, 1:], torch.full((4, 1), 2)], 1)
    target[-1, 2:] = pad
    sample = {"id": torch.arange(4), "net_input": net_input, "target": target,
              "ntokens": int(target.ne(pad).sum()), "nsentences": 4}
    crit = RDropLabelSmoothedCrossEntropyCriterion(task, False, 0.1, rdrop_alpha=5.0, rdrop_impl=impl)
    torch.manual_seed(7)
    loss, _, log = crit(model, sample)

    torch.manual_seed(7)  # the same dropout draws: same input shapes, same order
    out = model(**{k: v.repeat_interleave(2, dim=0) for k, v in net_input.items()})
    copies = copies_of(model.get_normalized_probs(out, log_probs=True), 2)
    ls = sum(label_smoothed_nll_loss(c.reshape(-1, c.size(-1)), target.reshape(-1), 0.1, pad)[0]
             for c in copies)
    kl = paper_kl(copies, target.eq(pad))
    assert kl > 1e-3
    torch.testing.assert_close(loss, ls + 5.0 * kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(log["rdrop_kl_loss"], kl.detach(), rtol=1e-4, atol=1e-6)
