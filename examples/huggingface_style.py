"""R-Drop with a Hugging Face-style causal language model: a batch dict in, an output with
``.logits`` out, labels of -100 where no loss is wanted.

``rdrop_causal_lm_loss`` is what a ``transformers.Trainer`` subclass would return from
``compute_loss``: it copies the batch (every row repeated in place, ``duplicate_net_input``), runs
ONE forward pass without the labels (so the model computes no loss of its own), shifts logits and
labels as causal LMs do, and calls ``rdrop_torch.fused_rdrop_loss``:

    class RDropTrainer(transformers.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            loss, _, _ = rdrop_causal_lm_loss(model, inputs, alpha=1.0)
            return loss

``TinyCausalLM`` below stands in for a transformers model (same call, same output field), so this
file runs with torch alone:

    python examples/huggingface_style.py
"""
from types import SimpleNamespace

import torch
from torch import nn

import rdrop_torch

IGNORE = -100  # the label Hugging Face models ignore


class TinyCausalLM(nn.Module):
    """A causal LM with a Hugging Face model's interface: ``model(input_ids=..., attention_mask=...)``
    returns an object with ``.logits`` (batch, time, vocab)."""

    def __init__(self, vocab=50, dim=32, dropout=0.2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.lm_head = nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        hidden, _ = self.rnn(self.dropout(self.embed(input_ids)))
        if attention_mask is not None:
            hidden = hidden * attention_mask[..., None]
        return SimpleNamespace(logits=self.lm_head(self.dropout(hidden)))


def rdrop_causal_lm_loss(model, batch, alpha, epsilon=0.0, num_passes=2):
    """R-Drop loss per predicted token of a causal LM batch {input_ids, attention_mask, labels}:
    (loss to backpropagate, NLL of one copy, KL), each divided by the number of labels != -100."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    copies = rdrop_torch.duplicate_net_input(inputs, num_passes, labels.size(0))
    logits = model(**copies).logits  # (m*B, T, V), copy k of row b at row b*m + k
    # causal LM: the logits at position t predict the label at t + 1
    loss, nll, kl = rdrop_torch.fused_rdrop_loss(logits[:, :-1], labels[:, 1:], num_passes=num_passes, alpha=alpha,
                                                 epsilon=epsilon, ignore_index=IGNORE)
    ntokens = labels[:, 1:].ne(IGNORE).sum()
    return loss / ntokens, nll / (num_passes * ntokens), kl / ntokens


def make_batch(generator, vocab=50, size=8, length=10):
    """Random token rows, right-padded: attention_mask 0 and labels -100 on the padding."""
    input_ids = torch.randint(0, vocab, (size, length), generator=generator)
    lengths = torch.randint(3, length + 1, (size,), generator=generator)
    attention_mask = (torch.arange(length) < lengths[:, None]).long()
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def main():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = TinyCausalLM().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(1, 51):
        loss, nll, kl = rdrop_causal_lm_loss(model, make_batch(generator), alpha=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step:3d}  nll/token {float(nll):.3f}  kl/token {float(kl):.4f}")


if __name__ == "__main__":
    main()
