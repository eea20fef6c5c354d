"""Shared helpers for the benchmarks: one subprocess per measured mode, RSS, tables.

``--device cuda`` (bench_loss, bench_step, bench_chunk) puts tensors and model on the GPU,
synchronises before reading the clock, and reports torch.cuda.max_memory_allocated (reset
before the measured steps) instead of the process RSS. Everything CUDA-specific sits in
the helpers below behind ``device == "cuda"``; on the CPU nothing changes.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def synchronize(device: str = "cpu"):
    """Wait for queued GPU work (a no-op on the CPU), so the clock measures the work itself."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def check_device(device: str):
    """Fail loudly, never fall back: --device cuda on a machine without CUDA is an error."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch.cuda.is_available() is False "
                             f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")


def reset_peak_memory(device: str):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def memory_mb(device: str):
    """(allocated now, peak since the last reset) in MiB on the GPU; on the CPU (RSS now, peak RSS)."""
    if device == "cuda":
        import torch

        return torch.cuda.memory_allocated() / 2**20, torch.cuda.max_memory_allocated() / 2**20
    return current_rss_mb(), peak_rss_mb()


def mem_label(device: str) -> str:
    return "peak CUDA MB" if device == "cuda" else "peak RSS MB"


def peak_and_base(r: dict):
    """A child's (peak, base) memory in MB: CUDA allocator numbers when it ran on the GPU."""
    if "peak_cuda_mb" in r:
        return r["peak_cuda_mb"], r["base_cuda_mb"]
    return r["peak_rss_mb"], r["base_rss_mb"]


def set_chunk_mb(mb, device: str):
    """Override the fused loss's default chunk size (MiB of float32) in this process, as
    chosen by benchmarks/bench_chunk.py; on the CPU the value is per intra-op thread."""
    if mb is None:
        return
    from rdrop_torch import fused

    name = "DEFAULT_CHUNK_BYTES_CUDA" if device == "cuda" else "DEFAULT_CHUNK_BYTES"
    if not hasattr(fused, name):
        raise SystemExit(f"--chunk-mb: rdrop_torch.fused has no {name} to override")
    setattr(fused, name, int(mb * 2**20))


def timed_reps(step, reps: int, budget_s: float, min_reps: int = 2, device: str = "cpu"):
    """Run step() until `reps` runs or `budget_s` seconds (at least min_reps); wall times
    (on a GPU, from a synchronised start to a synchronised end)."""
    times = []
    start = time.perf_counter()
    while len(times) < reps and (len(times) < min_reps or time.perf_counter() - start < budget_s):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def emit(result: dict):
    """Child side: the one JSON line the parent reads."""
    print("RESULT " + json.dumps(result), flush=True)


def run_child(script: str, args, threads: int, timeout: float = 900):
    """Parent side: run `script *args` (which hold ``--child ...``) in a fresh interpreter,
    return its RESULT dict."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, script, *map(str, args)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark child failed ({proc.returncode}): {' '.join(cmd)}\n"
                       + proc.stdout[-3000:])


def add_mode_options(ap, modes, reps: int, budget_s: float, unit: str):
    """The options of the per-mode benchmarks (bench_loss, bench_step); ``unit`` names a timed run."""
    ap.add_argument("--vocab", type=int, nargs="+", default=[10000, 32000])
    ap.add_argument("--reps", type=int, default=reps, help=f"timed {unit} after one warm-up")
    ap.add_argument("--budget", type=float, default=budget_s, help=f"seconds of timed {unit} per mode")
    ap.add_argument("--modes", nargs="+", default=modes, choices=modes)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where tensors and model live; cuda times with synchronisation and "
                         "reports torch.cuda.max_memory_allocated")
    ap.add_argument("--chunk-mb", type=float, default=None,
                    help="fused loss chunk size in MiB (default: rdrop_torch.fused's for the device)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")


def device_args(args):
    """The options a child needs besides its positional ones (same script, same parser)."""
    out = ["--device", args.device]
    if args.chunk_mb is not None:
        out += ["--chunk-mb", args.chunk_mb]
    return out


def write_json(path, payload):
    if path:
        with open(path, "w") as fh:
            json.dump(payload, fh, indent=1)


def run_modes(script: str, modes, vocab: int, child_args, threads: int, extra_args=()):
    """Measure each mode in its own child (``script --child MODE VOCAB *child_args``): {mode: result}."""
    results = {}
    for mode in modes:
        results[mode] = r = run_child(script, [*extra_args, "--child", mode, vocab, *child_args], threads)
        print(f"  done V={vocab} {mode}: {median(r['times']):.3f}s", file=sys.stderr, flush=True)
    return results


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine_line(threads: int, device: str = "cpu") -> str:
    import torch

    load = os.getloadavg()
    line = (f"machine: {platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"threads used={threads}, torch {torch.__version__}, python {platform.python_version()}, "
            f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        line += (f"; GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
                 f", cuDNN {torch.backends.cudnn.version()}")
    return line


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
