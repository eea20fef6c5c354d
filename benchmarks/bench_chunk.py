"""How the fused loss's time depends on its chunk size (sets fused.DEFAULT_CHUNK_BYTES).

    python benchmarks/bench_chunk.py            # 2 x 2048 tokens, V = 10k and 32k
    python benchmarks/bench_chunk.py --quick
    python benchmarks/bench_chunk.py --device cuda --tokens 8192   # sets DEFAULT_CHUNK_BYTES_CUDA

Forward+backward of fused_rdrop_loss (eager, m = 2) for float32 chunk sizes of
0.25 .. 16 MB (on CUDA 4 .. 1024 MB); medians of wall time and of process CPU time (CPU
time is less disturbed by other jobs on a shared machine). On CUDA the clock is read
after torch.cuda.synchronize() and the peak of torch.cuda.max_memory_allocated is shown.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import check_device, machine_line, markdown_table, synchronize, write_json  # noqa: E402

SIZES_MB = [0.25, 0.5, 1, 2, 4, 8, 16]
SIZES_MB_CUDA = [4, 16, 64, 256, 1024]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 x 256 tokens, 2 reps")
    ap.add_argument("--vocab", type=int, nargs="+", default=[10000, 32000])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--sizes-mb", type=float, nargs="+", default=None,
                    help=f"chunk sizes to try (default {SIZES_MB} MB; on cuda {SIZES_MB_CUDA})")
    ap.add_argument("--json", default=None, help="also write the results and the fastest size here")
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.reps = 256, 2
    cuda = args.device == "cuda"
    check_device(args.device)
    sizes = args.sizes_mb or (SIZES_MB_CUDA if cuda else SIZES_MB)

    import torch

    from rdrop_torch import fused

    torch.set_num_threads(args.threads)
    default_mb = (fused.DEFAULT_CHUNK_BYTES_CUDA if cuda else fused.DEFAULT_CHUNK_BYTES) / 2**20
    print(machine_line(args.threads, args.device))
    print(f"fused loss forward+backward on {args.device}, m = 2, 2 x {args.tokens} tokens, fp32; "
          f"default chunk = {default_mb:g} MB\n")
    rows, results = [], []
    for vocab in args.vocab:
        torch.manual_seed(0)
        logits = torch.randn(2 * args.tokens, vocab).mul_(2)
        target = torch.randint(2, vocab, (args.tokens,))
        logits, target = logits.to(args.device).requires_grad_(), target.to(args.device)
        for mb in sizes:
            chunk = max(1, int(mb * 2**20) // (4 * 2 * vocab))
            walls, cpus = [], []
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            for rep in range(args.reps + 1):  # the first is a warm-up
                synchronize(args.device)
                w0, c0 = time.perf_counter(), time.process_time()
                fused.fused_rdrop_loss(logits, target, 2, 5.0, 0.1, 1, chunk_rows=chunk)[0].backward()
                logits.grad = None
                synchronize(args.device)
                if rep:
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
            results.append({"vocab": vocab, "chunk_mb": mb, "rows": chunk, "wall_s": wall, "cpu_s": cpu,
                            "peak_cuda_mb": peak})
            rows.append([vocab, mb, chunk, f"{wall:.{4 if cuda else 3}f}", f"{cpu:.3f}"]
                        + ([f"{peak:.0f}"] if cuda else []))
            print(f"  V={vocab} {mb} MB done", file=sys.stderr, flush=True)
    print(markdown_table(["V", "chunk MB", "rows per copy", "median wall s", "median CPU s"]
                         + (["peak CUDA MB"] if cuda else []), rows))
    # The size to use: fastest at the largest vocabulary (where the loss costs most).
    largest = [r for r in results if r["vocab"] == max(args.vocab)]
    best = min(largest, key=lambda r: r["wall_s"])
    print(f"\nfastest at V={best['vocab']}: {best['chunk_mb']:g} MB ({best['wall_s']:.4f} s)")
    write_json(args.json, {"device": args.device, "tokens": args.tokens, "default_mb": default_mb,
                           "results": results, "best_mb": best["chunk_mb"]})


if __name__ == "__main__":
    main()
