"""The worked examples of rdrop_torch (examples/): the loss each computes is the paper's written
plainly on the same logits, the plain loop learns, and the Hugging Face-style loss is, without
dropout, exactly the model's own causal-LM cross-entropy (a real transformers model too, where
transformers is installed)."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from helpers import REPO, paper_kl


def example(name):
    spec = importlib.util.spec_from_file_location(f"rdrop_example_{name}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plain = example("plain_pytorch")
hf = example("huggingface_style")


def paper_loss(logits, target, alpha, eps, pad):
    """sum over the 2 copies of fairseq's label-smoothed NLL + alpha * 1/2 (KL(P1||P2) + KL(P2||P1)),
    and the NLL; copies read as rows k::2, padding excluded."""
    copies = [F.log_softmax(logits[k::2].double(), -1) for k in range(2)]
    keep = target.ne(pad)
    eps_i = eps / (logits.size(-1) - 1)
    total, nll = 0.0, 0.0
    for lp in copies:
        token_nll = -lp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total = total + ((1 - eps - eps_i) * token_nll + eps_i * -lp.sum(-1))[keep].sum()
        nll = nll + token_nll[keep].sum()
    return total + alpha * paper_kl(copies, ~keep), nll


def test_plain_loop_step_is_the_paper_loss():
    vocab, alpha, eps = 24, 2.0, 0.1
    inputs, targets = plain.make_batch(torch.Generator().manual_seed(3), vocab)
    assert targets.eq(plain.PAD).any()  # padding is part of the check
    model = plain.TinyLM(vocab).train()
    torch.manual_seed(7)
    loss, nll, kl = plain.rdrop_step(model, inputs, targets, alpha, eps)
    torch.manual_seed(7)  # the same dropout draws
    logits = model(inputs.repeat_interleave(2, dim=0))
    want_loss, want_nll = paper_loss(logits, targets, alpha, eps, plain.PAD)
    ntokens = int(targets.ne(plain.PAD).sum())
    torch.testing.assert_close(loss.double(), want_loss / ntokens, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nll.double(), want_nll / (2 * ntokens), rtol=1e-5, atol=1e-6)
    assert float(kl) > 0


def test_plain_loop_learns():
    history = plain.train(steps=150)
    first, last = (sum(n for n, _ in part) / len(part) for part in (history[:20], history[-20:]))
    assert last < 0.7 * first, (first, last)
    assert all(kl > 0 for _, kl in history)


def test_huggingface_style_loss_is_the_paper_loss_on_shifted_labels():
    batch = hf.make_batch(torch.Generator().manual_seed(1))
    assert batch["labels"].eq(hf.IGNORE).any()
    model = hf.TinyCausalLM().train()
    torch.manual_seed(5)
    loss, nll, kl = hf.rdrop_causal_lm_loss(model, batch, alpha=1.5, epsilon=0.1)
    torch.manual_seed(5)
    logits = model(input_ids=batch["input_ids"].repeat_interleave(2, 0),
                   attention_mask=batch["attention_mask"].repeat_interleave(2, 0)).logits
    labels = batch["labels"][:, 1:]
    want_loss, want_nll = paper_loss(logits[:, :-1], labels, 1.5, 0.1, hf.IGNORE)
    ntokens = int(labels.ne(hf.IGNORE).sum())
    torch.testing.assert_close(loss.double(), want_loss / ntokens, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nll.double(), want_nll / (2 * ntokens), rtol=1e-5, atol=1e-6)
    assert float(kl) > 0


def causal_lm_cross_entropy(logits, labels):
    """What a Hugging Face causal LM returns as its loss: mean CE of the shifted labels != -100."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def test_huggingface_style_nll_without_dropout_is_the_models_own_loss():
    batch = hf.make_batch(torch.Generator().manual_seed(2))
    model = hf.TinyCausalLM().eval()  # no dropout: both copies equal, the KL is 0
    with torch.no_grad():
        loss, nll, kl = hf.rdrop_causal_lm_loss(model, batch, alpha=1.0)
        own = causal_lm_cross_entropy(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    torch.testing.assert_close(nll, own)
    assert abs(float(kl)) < 1e-6 and float(loss) == pytest.approx(2 * float(own), rel=1e-5)


def test_a_real_transformers_model():
    """GPT-2 built from a tiny config (no download): R-Drop's NLL per copy is the model's own loss."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    batch = hf.make_batch(torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, nll, kl = hf.rdrop_causal_lm_loss(model, batch, alpha=1.0)
        own = model(**batch).loss
    torch.testing.assert_close(nll, own, rtol=1e-5, atol=1e-6)
    assert abs(float(kl)) < 1e-5
    model.train()  # dropout on: the copies differ
    _, _, kl = hf.rdrop_causal_lm_loss(model, batch, alpha=1.0)
    assert float(kl) > 0
