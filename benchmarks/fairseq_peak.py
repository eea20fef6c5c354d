"""Run fairseq-train or fairseq-generate in this process and report its peak memory at exit.

    python benchmarks/fairseq_peak.py train DATA [fairseq-train options]
    python benchmarks/fairseq_peak.py generate DATA [fairseq-generate options]
    python benchmarks/fairseq_peak.py train --bf16-without-tpu DATA --bf16 [...]

At exit it prints one line, ``PEAK_MEMORY {"cuda_mb": .., "rss_mb": .., "seconds": ..,
"plugin_loaded": ..}``.  fairseq's trainer calls torch.cuda.reset_peak_memory_stats() after
every update (for its gb_free metric), so the peak of the whole run is kept here by reading
the counter before each reset.  This file imports nothing of rdrop_fairseq: a run without
``--user-dir`` is fairseq alone (``plugin_loaded`` says whether anything loaded it).

``--bf16-without-tpu``: fairseq 0.12's option parsing turns ``--bf16`` into ``--tpu`` (its
bf16 path was written for TPUs; fairseq issue #4696), so ``fairseq-train --bf16`` on a
GPU asks for torch_xla and stops. With this flag the parsed ``tpu`` is set back to False
after parsing (unless ``--tpu`` itself was given), which is the decoupling suggested in
that issue: the trainer then casts model and batches to bfloat16 on the GPU (or CPU) and
uses fairseq's FP16Optimizer without loss scaling, as it does for --bf16 on a TPU.
"""
import atexit
import json
import resource
import sys
import time

TOOLS = ("train", "generate")


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        raise SystemExit(f"usage: fairseq_peak.py {{{','.join(TOOLS)}}} [fairseq options]")
    tool = sys.argv[1]
    rest = sys.argv[2:]
    decouple = "--bf16-without-tpu" in rest
    rest = [a for a in rest if a != "--bf16-without-tpu"]
    sys.argv = [f"fairseq-{tool}", *rest]
    start = time.time()
    if decouple:
        from fairseq import options

        parse = options.parse_args_and_arch

        def parse_without_tpu(*args, **kwargs):
            parsed = parse(*args, **kwargs)
            if getattr(parsed, "bf16", False) and "--tpu" not in rest:
                parsed.tpu = False
            return parsed

        options.parse_args_and_arch = parse_without_tpu

    import torch

    seen = {"cuda_peak": 0}
    if torch.cuda.is_available():
        reset = torch.cuda.reset_peak_memory_stats

        def keep_peak_then_reset(*args, **kwargs):
            seen["cuda_peak"] = max(seen["cuda_peak"], torch.cuda.max_memory_allocated())
            return reset(*args, **kwargs)

        torch.cuda.reset_peak_memory_stats = keep_peak_then_reset

    def report():
        cuda_mb = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_mb = max(seen["cuda_peak"], torch.cuda.max_memory_allocated()) / 2**20
        print("PEAK_MEMORY " + json.dumps({
            "cuda_mb": cuda_mb,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "seconds": time.time() - start,
            "plugin_loaded": "rdrop_fairseq" in sys.modules,
        }), flush=True)

    atexit.register(report)
    if tool == "train":
        from fairseq_cli.train import cli_main
    else:
        from fairseq_cli.generate import cli_main
    cli_main()


if __name__ == "__main__":
    main()
