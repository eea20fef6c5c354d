"""Shared helpers for the benchmarks: one subprocess per measured mode, RSS, tables."""
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


def timed_reps(step, reps: int, budget_s: float, min_reps: int = 2):
    """Run step() until `reps` runs or `budget_s` seconds (at least min_reps); wall times."""
    times = []
    start = time.perf_counter()
    while len(times) < reps and (len(times) < min_reps or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def emit(result: dict):
    """Child side: the one JSON line the parent reads."""
    print("RESULT " + json.dumps(result), flush=True)


def run_child(script: str, args, threads: int, timeout: float = 900):
    """Parent side: run `script --child ...` in a fresh interpreter, return its RESULT dict."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, script, "--child", *map(str, args)]
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


def run_modes(script: str, modes, vocab: int, child_args, threads: int):
    """Measure each mode in its own child (``script --child MODE VOCAB *child_args``): {mode: result}."""
    results = {}
    for mode in modes:
        results[mode] = r = run_child(script, [mode, vocab, *child_args], threads)
        print(f"  done V={vocab} {mode}: {median(r['times']):.3f}s", file=sys.stderr, flush=True)
    return results


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine_line(threads: int) -> str:
    import torch

    load = os.getloadavg()
    return (f"machine: {platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"threads used={threads}, torch {torch.__version__}, python {platform.python_version()}, "
            f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
