"""R-Drop in a plain PyTorch training loop, with rdrop_torch (no fairseq).

A small next-token model (embedding, GRU, dropout, linear) learns synthetic sequences. Each step
runs the batch twice in ONE forward pass, every sequence repeated in place (copy k of sequence b is
row b*2 + k), and ``rdrop_torch.fused_rdrop_loss`` returns, summed over the non-padding tokens,

    loss = sum over both copies of the label-smoothed NLL + alpha * 1/2 (KL(P1||P2) + KL(P2||P1))

with the NLL and the KL beside it. Dividing by the tokens of ONE copy gives per-token values.

    python examples/plain_pytorch.py --steps 300
"""
import argparse

import torch
from torch import nn

import rdrop_torch

PAD = 0


class TinyLM(nn.Module):
    def __init__(self, vocab, dim=32, dropout=0.3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, vocab)

    def forward(self, tokens):
        hidden, _ = self.rnn(self.dropout(self.embed(tokens)))
        return self.out(self.dropout(hidden))  # (batch, time, vocab) logits


def make_batch(generator, vocab, size=16, length=12):
    """Sequences that count up (mod vocab - 1, skipping PAD) from a random start, of random
    lengths, right-padded; returns (inputs, targets): targets are the inputs shifted by one."""
    start = torch.randint(1, vocab, (size, 1), generator=generator)
    tokens = (start + torch.arange(length + 1)) % (vocab - 1) + 1
    lengths = torch.randint(length // 2, length + 1, (size,), generator=generator)
    tokens[torch.arange(length + 1) > lengths[:, None]] = PAD
    return tokens[:, :-1], tokens[:, 1:]


def rdrop_step(model, inputs, targets, alpha, epsilon, num_passes=2):
    """The R-Drop loss of one batch, per target token: (loss to backpropagate, NLL of one copy, KL)."""
    copies = inputs.repeat_interleave(num_passes, dim=0)  # row b -> rows b*m .. b*m + m - 1
    logits = model(copies)  # (m*B, T, V): do not flatten before the loss (the copy index would move)
    loss, nll, kl = rdrop_torch.fused_rdrop_loss(logits, targets, num_passes=num_passes, alpha=alpha,
                                                 epsilon=epsilon, ignore_index=PAD)
    ntokens = targets.ne(PAD).sum()
    return loss / ntokens, nll / (num_passes * ntokens), kl / ntokens


def train(steps, vocab=24, alpha=1.0, epsilon=0.1, lr=3e-3, seed=0, log_every=0):
    """Train TinyLM for ``steps`` updates; returns the (NLL, KL) of every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TinyLM(vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(1, steps + 1):
        inputs, targets = make_batch(generator, vocab)
        model.train()  # dropout on: the two copies differ, and the KL pulls them together
        loss, nll, kl = rdrop_step(model, inputs, targets, alpha, epsilon)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((float(nll), float(kl)))
        if log_every and step % log_every == 0:
            print(f"step {step:4d}  nll/token {float(nll):.3f}  kl/token {float(kl):.4f}")
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the KL term (0: plain training)")
    args = parser.parse_args()
    train(args.steps, alpha=args.alpha, log_every=max(1, args.steps // 10))


if __name__ == "__main__":
    main()
