"""Time and peak memory of one forward+backward of the R-Drop loss on an adaptive softmax.

Modes (each measured in its own subprocess, so peak memory is not shared):
  full       exact full-vocabulary KL: normalized_log_probs + rdrop_loss_reference,
             what label_smoothed_cross_entropy_with_rdrop does for adaptive softmax
  companion  adaptive_loss_with_rdrop: AdaptiveSoftmax.forward + adaptive_rdrop_loss
  nll_only   adaptive_loss on the m copies without any KL (the floor the companion adds to)

Shapes default to transformer_lm_wiki103: V = 267,744, cutoffs 20000,60000, d = 1024,
factor 4, adaptive-softmax dropout 0.2. The decoder is left out: its output is a
random (m * tokens, d) leaf tensor. Targets are Zipf(1)-distributed word ranks,
so about 80 % of them fall in the head's shortlist, as in running text.

    python benchmarks/bench_adaptive.py --tokens 256 --passes 2
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODES = ("full", "companion", "nll_only")
PAD = 1


def zipf_targets(n, vocab, cutoff, seed):
    """Zipf(1) word ranks; the first rows get one word of every cluster (for the warm-up)."""
    import torch

    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    weights[:4] = 0  # fairseq's special symbols are never targets here
    target = torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    target[: len(cutoff) + 1] = torch.tensor([5] + [c + 5 for c in cutoff])
    return target


def measure(args):
    """One mode in this process: median seconds of fwd+bwd, and the peak RSS it added
    (high-water mark after the warm-up, so weight gradients are not counted; transient
    buffers of backward, common to every mode, are)."""
    from types import SimpleNamespace

    import torch

    from fairseq.modules.adaptive_softmax import AdaptiveSoftmax

    from rdrop_fairseq.log_probs import normalized_log_probs
    from rdrop_torch.adaptive_softmax import adaptive_nll, adaptive_rdrop_loss
    from rdrop_torch.token_loss import rdrop_loss_reference

    torch.manual_seed(0)
    m, n = args.passes, args.tokens
    cutoff = [int(c) for c in args.cutoff.split(",")]
    asm = AdaptiveSoftmax(args.vocab, args.dim, cutoff, dropout=0.2, factor=args.factor).train()
    fake_model = SimpleNamespace(decoder=SimpleNamespace(adaptive_softmax=asm))
    target = zipf_targets(n, args.vocab, cutoff, seed=1)
    hidden = torch.randn(m * n, args.dim, requires_grad=True)  # copy k of token r: row r*m + k

    def step(rows):
        tgt = target[:rows]
        x = hidden[: m * rows]  # the first `rows` tokens, all their copies
        if args.mode == "full":
            lprobs = normalized_log_probs(fake_model, (x,))
            loss = rdrop_loss_reference(lprobs, tgt, m, args.alpha, 0.0, PAD)[0]
        else:
            logits, targets = asm(x, tgt.repeat_interleave(m))
            if args.mode == "companion":
                loss = adaptive_rdrop_loss(logits, targets, m, args.alpha, PAD)[0]
            else:
                loss = adaptive_nll(logits, targets, PAD)
        loss.backward()
        hidden.grad = None
        asm.zero_grad(set_to_none=False)  # keep the weight gradients: they are not the loss's cost

    step(4)  # allocates every weight gradient (targets reach all clusters) and warms up kernels
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step(n)
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shares = [((target >= lo) & (target < hi)).float().mean().item()
              for lo, hi in zip([0] + cutoff, cutoff + [args.vocab])]
    return {"mode": args.mode, "seconds": statistics.median(times),
            "peak_extra_mib": (peak_kb - base_kb) / 1024, "target_shares": shares}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256, help="target tokens per copy")
    parser.add_argument("--passes", type=int, default=2, help="m, copies of the batch")
    parser.add_argument("--vocab", type=int, default=267744)
    parser.add_argument("--cutoff", default="20000,60000")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes to compare")
    parser.add_argument("--mode", choices=MODES, help="measure one mode here and print JSON")
    args = parser.parse_args()

    import torch  # noqa: E402  (after argparse: --help stays instant)

    torch.set_num_threads(args.threads)
    if args.mode:
        print(json.dumps(measure(args)))
        return

    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        sys.exit(f"--modes: unknown {sorted(set(modes) - set(MODES))}; choose from {','.join(MODES)}")
    rows = []
    for mode in modes:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"mode {mode} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    print(f"V={args.vocab} cutoff={args.cutoff} d={args.dim} factor={args.factor:g} "
          f"m={args.passes} tokens/copy={args.tokens} threads={args.threads} (CPU, fp32)")
    print("target share head/tails: " + " / ".join(f"{s:.1%}" for s in rows[0]["target_shares"]))
    print(f"| {'mode':<10} | {'fwd+bwd s':>9} | {'peak extra MiB':>14} |")
    print(f"|{'-' * 12}|{'-' * 11}:|{'-' * 15}:|")
    for r in rows:
        print(f"| {r['mode']:<10} | {r['seconds']:>9.2f} | {r['peak_extra_mib']:>14.0f} |")
    by_mode = {r["mode"]: r for r in rows}
    if {"full", "companion"} <= set(by_mode):
        full, comp = by_mode["full"], by_mode["companion"]
        print(f"companion vs full: {full['seconds'] / comp['seconds']:.1f}x faster, "
              f"{full['peak_extra_mib'] / max(comp['peak_extra_mib'], 1):.1f}x less extra memory")


if __name__ == "__main__":
    main()
