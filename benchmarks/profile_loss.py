"""Where the time of one loss forward+backward goes (torch.profiler, CPU).

    python benchmarks/profile_loss.py --impl fused --vocab 10000
    python benchmarks/profile_loss.py --impl builtin --vocab 10000

Prints the profiler's table of ATen ops sorted by self CPU time, for 2 x TOKENS
rows of fp32 logits (eps 0.1, alpha 5), after one warm-up call.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loss import MODES, PAD, make_logits, make_loss_fn  # noqa: E402
from common import machine_line  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", choices=MODES, default="fused")
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=15, help="rows of the printed table")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    logits = make_logits(args.impl, args.tokens, args.vocab)
    target = torch.randint(2, args.vocab, (args.tokens,))
    target[::16] = PAD
    loss_fn = make_loss_fn(args.impl, args.tokens)
    loss_fn(logits, target).backward()  # warm-up
    logits.grad = None
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss_fn(logits, target).backward()
    print(machine_line(args.threads))
    print(f"{args.impl}: loss forward+backward, 2 x {args.tokens} tokens, V = {args.vocab}\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
