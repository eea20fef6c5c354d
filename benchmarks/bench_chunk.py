"""How the fused loss's time depends on its chunk size (sets fused.DEFAULT_CHUNK_BYTES).

    python benchmarks/bench_chunk.py            # 2 x 2048 tokens, V = 10k and 32k
    python benchmarks/bench_chunk.py --quick

Forward+backward of fused_rdrop_loss (eager, m = 2) for float32 chunk sizes of
0.25 .. 16 MB; medians of wall time and of process CPU time (CPU time is less
disturbed by other jobs on a shared machine).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_line, markdown_table  # noqa: E402

SIZES_MB = [0.25, 0.5, 1, 2, 4, 8, 16]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 x 256 tokens, 2 reps")
    ap.add_argument("--vocab", type=int, nargs="+", default=[10000, 32000])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.reps = 256, 2

    import torch

    from rdrop_fairseq import fused

    torch.set_num_threads(args.threads)
    print(machine_line(args.threads))
    print(f"fused loss forward+backward, m = 2, 2 x {args.tokens} tokens, fp32; default chunk "
          f"= {fused.DEFAULT_CHUNK_BYTES / 2**20:g} MB\n")
    rows = []
    for vocab in args.vocab:
        torch.manual_seed(0)
        logits = torch.randn(2 * args.tokens, vocab).mul_(2).requires_grad_()
        target = torch.randint(2, vocab, (args.tokens,))
        for mb in SIZES_MB:
            chunk = max(1, int(mb * 2**20) // (4 * 2 * vocab))
            walls, cpus = [], []
            for rep in range(args.reps + 1):  # the first is a warm-up
                w0, c0 = time.perf_counter(), time.process_time()
                fused.fused_rdrop_loss(logits, target, 2, 5.0, 0.1, 1, chunk_rows=chunk)[0].backward()
                logits.grad = None
                if rep:
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
            rows.append([vocab, mb, chunk, f"{statistics.median(walls):.3f}", f"{statistics.median(cpus):.3f}"])
            print(f"  V={vocab} {mb} MB done", file=sys.stderr, flush=True)
    print(markdown_table(["V", "chunk MB", "rows per copy", "median wall s", "median CPU s"], rows))


if __name__ == "__main__":
    main()
