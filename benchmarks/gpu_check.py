"""The GPU path checked in one prepared run, written as markdown plus raw logs.

    python benchmarks/gpu_check.py --device cuda --out gpu_results/   # one GPU, ~8 minutes
    python benchmarks/gpu_check.py --device cpu --out /tmp/dry        # CPU dry run (CI), tiny sizes
    python benchmarks/gpu_check.py --device cuda --out r/ --budget-s 420   # ends within 7 minutes

On a machine without a package registry, benchmarks/gpu_offline.sh installs what it needs from
carried wheels and runs it (docs/performance.md, "The GPU check").

Steps (each a subprocess with its own timeout; its output goes to OUT/raw/<step>.log):
  numerics  tests/rdrop_torch/test_device_numerics.py with RDROP_TEST_DEVICE=<device> (fused and
            reference vs the paper's formula: fp32/fp16/bf16 inputs, +-1e4 logits, m = 2, 3,
            gradients), plus tests/rdrop_torch/test_fused.py -k cuda on CUDA
  chunk     benchmarks/bench_chunk.py: the fused loss's chunk size sweep; the fastest size at
            the largest V is used by the next two steps
  loss      benchmarks/bench_loss.py: loss forward+backward, built-in vs reference vs fused
  step      benchmarks/bench_step.py: one training step, baseline, doubled-batch baseline,
            built-in, fused, reference (on CUDA a transformer of d = 512, 6+6 layers, in fp16
            as fairseq-train --fp16 holds it)
  prepare   Multi30k via recipes/translation/multi30k/prepare.py (runs alongside the above:
            CPU only)
  train     fairseq-train transformer_iwslt_de_en for a few hundred updates: baseline,
            fairseq's built-in R-Drop (no --user-dir: the plugin would replace it) and the
            plugin, in --fp16; the plugin also in --bf16 and --memory-efficient-fp16.
            words/s, updates/s, peak CUDA memory, gradient-overflow count, NaN/inf check
  generate  fairseq-generate (beam 5) from each run's last checkpoint, all at once
On the CPU every size is tiny and training runs in fp32 (fairseq's --fp16, --bf16 and
--memory-efficient-fp16 need a GPU; the report says so): a dry run of the plumbing.

Every step runs even when an earlier one failed; the exit status is non-zero when any
failed, and the failed steps are named on stderr and at the top of OUT/report.md.
OUT/results.json holds everything the report was made from.
--budget-s N: every step's timeout is cut to what is left of N seconds, and a step that would
start with less than MIN_STEP_S (10 s) left is not run (and counts as failed), so the whole run
ends within N seconds (REPORT_S of them kept for the report). On CUDA, where steps run one after another, the report is
rewritten after each step, so a run stopped from outside still leaves one.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
sys.path.insert(0, str(REPO))  # recipes.common
from recipes.common.fairseq_flags import KEEP_LAST_BATCH  # noqa: E402

# Per-device sizes. CUDA: realistic; CPU: the smallest that exercises every code path.
SIZES = {
    "cuda": dict(
        numerics=[],
        chunk=["--vocab", "32000", "--tokens", "8192", "--reps", "3"],
        loss=["--vocab", "32000", "--tokens", "8192", "--reps", "10", "--budget", "4",
              "--modes", "ce-2x", "builtin", "reference", "fused"],
        step=["--vocab", "32000", "--fp16", "--layers", "6", "--embed-dim", "512", "--ffn-dim", "2048",
              "--heads", "8", "--sentences", "128", "--length", "32", "--reps", "10", "--budget", "4",
              "--modes", "baseline", "baseline-2x", "builtin", "fused", "reference"],
        prepare=dict(vocab=8000, max_lines=None),
        train=["--max-update", "200", "--max-tokens", "4096"],
        generate=["--beam", "5", "--batch-size", "128"],
        timeouts=dict(numerics=240, chunk=150, loss=240, step=300, prepare=300, train=240, generate=240),
    ),
    "cpu": dict(
        # the whole file runs in the ordinary CPU test suite; here one case of each kind
        numerics=["-k", "device_is or (float16 and 10000 and 2-fused)"],
        chunk=["--vocab", "500", "--tokens", "64", "--reps", "1", "--sizes-mb", "0.25", "1"],
        loss=["--vocab", "500", "--tokens", "64", "--reps", "1", "--budget", "1",
              "--modes", "builtin", "reference", "fused"],
        step=["--vocab", "500", "--fp16", "--layers", "1", "--embed-dim", "32", "--ffn-dim", "64", "--heads", "2",
              "--sentences", "4", "--length", "8", "--reps", "1", "--budget", "1",
              "--modes", "baseline-2x", "builtin", "fused"],
        prepare=dict(vocab=300, max_lines={"train": 400, "valid": 40, "test": 20}),
        # transformer_iwslt_de_en's options, shrunk: the architecture stays the one named
        train=["--max-update", "3", "--max-tokens", "1024", "--cpu", "--encoder-layers", "1",
               "--decoder-layers", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
               "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
               "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"],
        generate=["--beam", "2", "--batch-size", "32", "--cpu"],
        # generous: a dry run times nothing, and a shared CI machine can be many times slower
        # than its ~1 minute on two free cores
        timeouts=dict(numerics=900, chunk=900, loss=900, step=900, prepare=900, train=900, generate=900),
    ),
}
ALPHA = 5.0
# (run name, criterion, load the plugin?, precision flags). On CPU only the fp32 trio runs.
TRAIN_RUNS = [
    ("baseline-fp16", "label_smoothed_cross_entropy", False, ["--fp16"]),
    ("builtin-fp16", "label_smoothed_cross_entropy_with_rdrop", False, ["--fp16"]),
    ("plugin-fp16", "label_smoothed_cross_entropy_with_rdrop", True, ["--fp16"]),
    # fairseq 0.12 turns --bf16 into --tpu (issue #4696); fairseq_peak.py undoes that, said in the report
    ("plugin-bf16", "label_smoothed_cross_entropy_with_rdrop", True, ["--bf16", "--bf16-without-tpu"]),
    ("plugin-memeff-fp16", "label_smoothed_cross_entropy_with_rdrop", True, ["--memory-efficient-fp16"]),
]
# On the CPU: the fp16 trio in fp32 (renamed), and bf16, which fairseq's trainer also runs on a CPU
CPU_RUNS = ["baseline-fp16", "builtin-fp16", "plugin-fp16", "plugin-bf16"]
# --budget-s: no step starts with less than this left; this much is kept for writing the report
MIN_STEP_S, REPORT_S = 10, 5
SECTIONS = ["## Summary", "## Targets", "## 1. Numerics", "## 2. Chunk size sweep",
            "## 3. Loss forward+backward", "## 4. Training step", "## 5. fairseq-train",
            "## 6. fairseq-generate"]


class StepFailed(RuntimeError):
    pass


class Check:
    def __init__(self, device, out, budget_s=None):
        self.device, self.out = device, Path(out).resolve()
        self.raw = self.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.sizes = SIZES[device]
        self.status = {}  # step -> (ok, seconds, message)
        self.results = {"device": device}
        self.text = {}  # section -> markdown body
        self.budget_s, self.deadline = budget_s, None  # the deadline is set when run_all starts
        self.t0, self.finished, self.progressive = time.time(), False, False

    # ---- running -------------------------------------------------------------------
    def timeout_for(self, name, timeout):
        """``timeout`` cut to what is left of --budget-s; StepFailed when too little is left."""
        if self.deadline is None:
            return timeout
        left = self.deadline - time.time() - REPORT_S
        if left < MIN_STEP_S:
            raise StepFailed(f"{name}: not run, the time budget (--budget-s {self.budget_s:g}) is spent")
        return min(timeout, left)

    def run(self, name, cmd, timeout, env=None):
        """Run ``cmd``; its output to raw/<name>.log; StepFailed (naming it) on error or timeout."""
        timeout = self.timeout_for(name, timeout)
        log = self.raw / f"{name}.log"
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        with open(log, "w") as fh:
            fh.write("$ " + " ".join(map(str, cmd)) + "\n")
            fh.flush()
            try:
                proc = subprocess.run(list(map(str, cmd)), stdout=fh, stderr=subprocess.STDOUT,
                                      cwd=REPO, env=full_env, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise StepFailed(f"{name}: timed out after {timeout:.0f} s (see raw/{name}.log)")
        text = log.read_text(errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(text.splitlines()[-15:])
            raise StepFailed(f"{name}: exit {proc.returncode} (see raw/{name}.log)\n{tail}")
        return text

    def step(self, name, fn):
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        t0 = time.time()
        try:
            fn()
            self.status[name] = (True, time.time() - t0, "")
        except Exception as err:  # every failure is recorded and reported, none is fatal here
            message = str(err) if isinstance(err, StepFailed) else f"{name}: {type(err).__name__}: {err}"
            self.status[name] = (False, time.time() - t0, message)
            self.text.setdefault(name, "")
            self.text[name] += f"\n**FAILED**: `{message.splitlines()[0]}`\n"
        ok, secs, msg = self.status[name]
        print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED'} ({secs:.0f} s)", file=sys.stderr, flush=True)
        if self.progressive:
            self.last_step = name
            self.write_report()

    # ---- steps ---------------------------------------------------------------------
    def numerics(self):
        env = {"RDROP_TEST_DEVICE": self.device}
        cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/rdrop_torch/test_device_numerics.py",
               *self.sizes["numerics"]]
        body = []
        try:
            text = self.run("numerics", cmd, self.sizes["timeouts"]["numerics"], env)
        finally:
            log = (self.raw / "numerics.log").read_text(errors="replace")
            body.append(f"`RDROP_TEST_DEVICE={self.device} pytest tests/rdrop_torch/test_device_numerics.py "
                        f"{' '.join(self.sizes['numerics'])}`: {pytest_summary(log)}")
            self.text["numerics"] = "\n".join(body)
        if self.device == "cuda":  # the CUDA test of tests/rdrop_torch/test_fused.py (skipped on CPU)
            cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/rdrop_torch/test_fused.py", "-k", "cuda",
                   "-rs"]
            try:
                text = self.run("numerics-test_fused-cuda", cmd, 120)
            except StepFailed:
                text = (self.raw / "numerics-test_fused-cuda.log").read_text(errors="replace")
                nothing_selected = re.search(r"\d+ deselected", text) and not re.search(r"\d+ (failed|error)", text)
                if not nothing_selected:
                    raise
                # pytest's exit 5: test_fused.py no longer has a test named *cuda*; the summary says so
            self.text["numerics"] += f"\n\n`pytest tests/rdrop_torch/test_fused.py -k cuda`: {pytest_summary(text)}"
        self.results["numerics"] = pytest_summary(text)

    def chunk(self):
        path = self.raw / "chunk.json"
        text = self.run("chunk", [PY, "benchmarks/bench_chunk.py", "--device", self.device, "--threads",
                                  self.threads, "--json", path, *self.sizes["chunk"]],
                        self.sizes["timeouts"]["chunk"])
        data = json.loads(path.read_text())
        self.results["chunk"] = data
        self.best_chunk_mb = data["best_mb"]
        self.text["chunk"] = (f"```\n{header_lines(text)}\n```\n\n{table_of(text)}\n\n"
                              f"Fastest at the largest V: **{data['best_mb']:g} MB** (the library's "
                              f"default for {self.device}: {data['default_mb']:g} MB); used below.")

    def chunk_args(self):
        mb = getattr(self, "best_chunk_mb", None)
        return [] if mb is None else ["--chunk-mb", mb]

    def loss(self):
        path = self.raw / "loss.json"
        text = self.run("loss", [PY, "benchmarks/bench_loss.py", "--device", self.device, "--threads",
                                 self.threads, "--json", path, *self.chunk_args(), *self.sizes["loss"]],
                        self.sizes["timeouts"]["loss"])
        self.results["loss"] = data = json.loads(path.read_text())
        self.text["loss"] = f"```\n{header_lines(text)}\n```\n\n{table_of(text)}\n\n{verdict_lines(text)}"
        lines = []
        for vocab, res in data["results"].items():
            if "fused" in res:  # fp32 logits, m = 2: what the estimate in docs/performance.md assumes
                moved = chunked_bytes_per_element(2, 4) * int(vocab) * 2 * data["tokens"]
                t = median(res["fused"]["times"])
                ideal = single_pass_bytes_per_element(4, 2) * int(vocab) * 2 * data["tokens"]
                lines.append(f"- V={vocab}: the chunked path moves ~{moved / 1e9:.2f} GB in {t * 1e3:.1f} ms "
                             f"(~{moved / t / 1e9:.0f} GB/s effective); a 2-read + 1-write kernel would "
                             f"move {ideal / 1e9:.2f} GB, ~{t * ideal / moved * 1e3:.1f} ms at that bandwidth")
        self.text["loss"] += "\n\nMemory-traffic estimate (formula in docs/performance.md):\n" + "\n".join(lines)

    def bench_step(self):
        path = self.raw / "step.json"
        text = self.run("step", [PY, "benchmarks/bench_step.py", "--device", self.device, "--threads",
                                 self.threads, "--json", path, *self.chunk_args(), *self.sizes["step"]],
                        self.sizes["timeouts"]["step"])
        self.results["step"] = json.loads(path.read_text())
        self.text["step"] = f"```\n{header_lines(text)}\n```\n\n{table_of(text)}\n\n{verdict_lines(text)}"

    def start_prepare(self):
        """Multi30k preparation in the background (CPU: spm + fairseq-preprocess)."""
        data = data_dir()
        cfg = self.sizes["prepare"]
        work = self.out / "work" / "multi30k"
        code = ("import sys; sys.path.insert(0, 'recipes/translation/multi30k'); from prepare import prepare; "
                f"print('DATA_BIN', prepare({str(work)!r}, {cfg['vocab']}, max_lines={cfg['max_lines']!r}))")
        self.prepare_log = open(self.raw / "prepare.log", "w")
        env = dict(os.environ, RDROP_DATA_DIR=str(data), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.prepare_proc = subprocess.Popen([PY, "-c", code], cwd=REPO, env=env, stdout=self.prepare_log,
                                             stderr=subprocess.STDOUT)
        self.data_bin = work / "data-bin"

    def wait_prepare(self):
        if self.prepare_proc is None:
            raise StepFailed(f"prepare: {self.prepare_error}")
        try:
            code = self.prepare_proc.wait(timeout=self.timeout_for("prepare", self.sizes["timeouts"]["prepare"]))
        except StepFailed:  # no time left to wait for it
            self.prepare_proc.kill()
            raise
        except subprocess.TimeoutExpired:
            self.prepare_proc.kill()
            raise StepFailed("prepare: Multi30k preparation timed out (see raw/prepare.log)")
        finally:
            self.prepare_log.close()
        if code != 0:
            raise StepFailed(f"prepare: exit {code} (see raw/prepare.log)")
        n_test = len((self.out / "work" / "multi30k" / "raw" / "test.en").read_text().splitlines())
        self.results["prepare"] = {"data_bin": str(self.data_bin), "test_sentences": n_test}
        self.text["prepare"] = (f"Multi30k prepared by `recipes/translation/multi30k/prepare.py` "
                                f"(sentencepiece vocab {self.sizes['prepare']['vocab']}, lines "
                                f"{self.sizes['prepare']['max_lines'] or 'all'}; on the CPU, while steps 1-4 "
                                f"ran); {n_test} test sentences. Model transformer_iwslt_de_en, "
                                f"shared embeddings, alpha {ALPHA:g} for R-Drop, options "
                                f"`{' '.join(self.sizes['train'])}`.")

    def train_runs(self):
        runs = [r for r in TRAIN_RUNS if self.device == "cuda" or r[0] in CPU_RUNS]
        if self.device == "cuda":
            return runs
        return [(name.replace("-fp16", "-fp32"), crit, plugin, [] if "--fp16" in prec else prec)
                for name, crit, plugin, prec in runs]

    def train(self, name, criterion, plugin, precision):
        save = self.out / "work" / "ckpt" / name
        cmd = [PY, "benchmarks/fairseq_peak.py", "train", self.data_bin, "--task", "translation",
               "--source-lang", "de", "--target-lang", "en", "--arch", "transformer_iwslt_de_en",
               "--share-all-embeddings", "--dropout", "0.3", "--optimizer", "adam",
               "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt",
               "--warmup-updates", "100", "--weight-decay", "0.0001", "--criterion", criterion,
               "--label-smoothing", "0.1", "--seed", "1", "--save-dir", save, "--no-epoch-checkpoints",
               "--no-save-optimizer-state", "--log-format", "json", "--log-interval", "10",
               "--num-workers", "0", *KEEP_LAST_BATCH, *precision,
               *self.sizes["train"]]
        if criterion.endswith("_with_rdrop"):
            cmd += ["--rdrop-alpha", ALPHA]
        if plugin:
            cmd += ["--user-dir", REPO / "rdrop_fairseq"]
        text = self.run(f"train-{name}", cmd, self.sizes["timeouts"]["train"],
                        env={"OMP_NUM_THREADS": self.threads, "MKL_NUM_THREADS": self.threads})
        stats = parse_train_log(text)
        stats.update(run=name, criterion=criterion, plugin=plugin,
                     precision=" ".join(p for p in precision if p != "--bf16-without-tpu") or "fp32")
        replaced = "label_smoothed_cross_entropy_with_rdrop (replacing fairseq's built-in)" in text
        if plugin != stats["peak"]["plugin_loaded"] or (criterion.endswith("_rdrop") and plugin != replaced):
            raise StepFailed(f"train-{name}: plugin loaded={stats['peak']['plugin_loaded']}, "
                             f"criterion replaced={replaced}, expected {plugin}")
        bad = [k for k, v in stats["last"].items() if isinstance(v, float) and not math.isfinite(v)]
        if bad or not stats["finite"]:
            raise StepFailed(f"train-{name}: non-finite values in the log ({bad or 'train_inner'})")
        self.results.setdefault("train", {})[name] = stats

    def generate_all(self):
        limit = self.timeout_for("generate", self.sizes["timeouts"]["generate"])  # before any starts
        procs = {}
        for name, *_ in self.train_runs():
            ckpt = self.out / "work" / "ckpt" / name / "checkpoint_last.pt"
            if not ckpt.exists():
                self.results.setdefault("generate", {})[name] = {"error": "no checkpoint (training failed)"}
                continue
            # --user-dir for every run: under torch >= 2.6 (weights_only) fairseq alone cannot
            # load its own checkpoints; the plugin's allow-list does not change the model.
            cmd = [PY, "benchmarks/fairseq_peak.py", "generate", self.data_bin, "--task", "translation",
                   "--source-lang", "de", "--target-lang", "en", "--path", ckpt, "--gen-subset", "test",
                   "--remove-bpe", "sentencepiece", "--max-len-a", "1.2", "--max-len-b", "10",
                   *KEEP_LAST_BATCH, "--user-dir", REPO / "rdrop_fairseq",
                   *self.sizes["generate"]]
            log = open(self.raw / f"generate-{name}.log", "w")
            log.write("$ " + " ".join(map(str, cmd)) + "\n")
            log.flush()
            procs[name] = (subprocess.Popen(list(map(str, cmd)), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, OMP_NUM_THREADS="1")), log)
        errors = []
        expected = self.results.get("prepare", {}).get("test_sentences")
        deadline = time.time() + limit
        for name, (proc, log) in procs.items():
            try:
                code = proc.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = "timeout"
            log.close()
            text = (self.raw / f"generate-{name}.log").read_text(errors="replace")
            hyps = len(re.findall(r"^H-\d+", text, flags=re.M))
            bleu = re.search(r"BLEU4 = ([\d.]+)", text)
            row = {"exit": code, "hypotheses": hyps, "bleu4": float(bleu.group(1)) if bleu else None}
            self.results.setdefault("generate", {})[name] = row
            if code != 0 or hyps != expected:
                errors.append(f"generate-{name}: exit {code}, {hyps} of {expected} hypotheses "
                              f"(see raw/generate-{name}.log)")
        if errors or not procs:
            raise StepFailed("; ".join(errors) or "generate: no checkpoint to decode")

    # ---- report --------------------------------------------------------------------
    def step_names(self):
        return (["numerics", "chunk", "loss", "step", "prepare"]
                + [f"train-{name}" for name, *_ in self.train_runs()] + ["generate"])

    def bench_group(self):
        self.step("numerics", self.numerics)
        self.step("chunk", self.chunk)
        self.step("loss", self.loss)
        self.step("step", self.bench_step)

    def train_group(self):
        self.step("prepare", self.wait_prepare)
        if self.status["prepare"][0]:
            for name, crit, plugin, prec in self.train_runs():
                self.step(f"train-{name}", lambda a=(name, crit, plugin, prec): self.train(*a))
            self.step("generate", self.generate_all)
        else:
            for name in self.step_names()[5:]:
                self.status[name] = (False, 0.0, f"{name}: not run, data preparation failed")

    def run_all(self, threads):
        self.threads = str(threads)
        t0 = self.t0 = time.time()
        if self.budget_s is not None:
            self.deadline = t0 + self.budget_s
        # the steps run one after another on CUDA only: there a report can follow each of them
        self.progressive = self.device == "cuda"
        try:
            self.start_prepare()  # CPU work alongside the benchmarks (it is not timed)
        except Exception as err:
            self.prepare_proc, self.prepare_error = None, err
        if self.device == "cuda":
            # one after the other: nothing else may run on the GPU while it is timed
            self.bench_group()
            self.train_group()
        else:
            # a dry run measures nothing: both halves at once to keep CI fast
            import threading

            other = threading.Thread(target=self.train_group)
            other.start()
            self.bench_group()
            other.join()
        self.results["total_seconds"] = time.time() - t0
        self.finished = True
        self.write_report()
        failed = [k for k in self.step_names() if not self.status.get(k, (False,))[0]]
        for k in failed:
            print(f"[gpu_check] FAILED {self.status.get(k, (0, 0, k + ': never ran'))[2]}", file=sys.stderr)
        return failed

    def write_report(self):
        failed = [k for k in self.step_names() if not self.status.get(k, (False,))[0]]
        budget = f" --budget-s {self.budget_s:g}" if self.budget_s is not None else ""
        seconds = self.results.get("total_seconds", time.time() - self.t0)
        lines = [f"# GPU check: device {self.device}", "",
                 f"`python benchmarks/gpu_check.py --device {self.device} --out {self.out.name}/{budget}` "
                 f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                 f"{seconds:.0f} s in all).", "",
                 f"{environment_line(self.device)}", ""]
        if not self.finished:
            lines += [f"**Unfinished**: written after step `{getattr(self, 'last_step', '-')}`; the steps "
                      "after it had not run yet.", ""]
        if self.device == "cpu":
            lines += ["**CPU dry run**: tiny sizes; fairseq-train's --fp16 runs are made in fp32 instead "
                      "(fairseq's --fp16 and --memory-efficient-fp16 need a GPU; the memory-efficient run "
                      "is not made here), the --bf16 run is made on the CPU. Timings and memory below "
                      "say nothing about a GPU.", ""]
        lines += ["## Summary", "", "FAILED steps: " + (", ".join(failed) if failed else "none"), "",
                  "| step | status | seconds | log |", "|---|---|---|---|"]
        for k in self.step_names():
            ok, secs, msg = self.status.get(k, (False, 0.0, f"{k}: never ran"))
            log = "raw/generate-*.log" if k == "generate" else f"raw/{k}.log"
            lines.append(f"| {k} | {'ok' if ok else 'FAILED'} | {secs:.0f} | {log} |")
        messages = [self.status.get(k, (0, 0, f"{k}: never ran"))[2] for k in failed]
        lines += [""] + [f"- {m.splitlines()[0]}" for m in messages]
        lines += ["", "## Targets", "", self.targets_table(), ""]
        lines += ["## 1. Numerics", "", self.text.get("numerics", "not run"), ""]
        lines += ["## 2. Chunk size sweep", "", self.text.get("chunk", "not run"), ""]
        lines += ["## 3. Loss forward+backward", "", self.text.get("loss", "not run"), ""]
        lines += ["## 4. Training step", "", self.text.get("step", "not run"), ""]
        lines += ["## 5. fairseq-train", "", self.text.get("prepare", ""), "", self.train_table(), ""]
        lines += ["## 6. fairseq-generate", "", self.generate_table(), ""]
        (self.out / "report.md").write_text("\n".join(lines))
        (self.out / "results.json").write_text(json.dumps(
            {**self.results, "status": {k: list(v) for k, v in self.status.items()}}, indent=1, default=str))

    def targets_table(self):
        rows = []
        step = self.results.get("step", {}).get("results", {})
        if step:
            vocab = max(step, key=int)
            res = step[vocab]
            if {"fused", "baseline-2x"} <= set(res):
                t = median(res["fused"]["times"]) / median(res["baseline-2x"]["times"])
                rows.append([f"training step, V = {vocab}: fused <= 1.05x doubled-batch baseline",
                             f"{t:.3f}x", verdict(t <= 1.05)])
            if {"fused", "builtin"} <= set(res):
                m = peak(res["fused"]) / peak(res["builtin"])
                rows.append([f"training step, V = {vocab}: peak memory <= 0.6x built-in", f"{m:.3f}x",
                             verdict(m <= 0.6)])
            # In a real training step the built-in lays the copies out [x; x] and the plugin
            # interleaves them, so dropout draws different masks and their losses differ by
            # design; the built-in's equality is the "loss alone" row (same logits for all).
            rows.append(same_losses("training step (loss/token)", step, modes=("reference", "fused")))
        loss = self.results.get("loss", {}).get("results", {})
        if loss:
            rows.append(same_losses("loss alone", loss))
        train = self.results.get("train", {})
        base = next((v for k, v in train.items() if k.startswith("baseline")), None)
        for name, s in train.items():
            if name.startswith("plugin") and base is not None:
                rows.append([f"fairseq-train {name}: overflow-skipped updates <= baseline's",
                             f"{s['overflows']} vs {base['overflows']}", verdict(s["overflows"] <= base["overflows"])])
        builtin = next((v for k, v in train.items() if k.startswith("builtin")), None)
        plugin = next((v for k, v in train.items() if k.startswith("plugin")), None)
        if builtin and plugin and builtin["peak"].get("cuda_mb") and plugin["peak"].get("cuda_mb"):
            m = plugin["peak"]["cuda_mb"] / builtin["peak"]["cuda_mb"]
            rows.append([f"fairseq-train {plugin['run']}: peak CUDA memory <= 0.6x built-in's", f"{m:.3f}x",
                         verdict(m <= 0.6)])
        if not rows:
            return "nothing measured (the steps above failed)"
        return md_table(["target", "measured", "verdict"], rows)

    def train_table(self):
        rows = []
        for name, *_ in self.train_runs():
            s = self.results.get("train", {}).get(name)
            if s is None:
                rows.append([name, "FAILED or not run"] + [""] * 9)
                continue
            mem = s["peak"].get("cuda_mb")
            rows.append([name, s["criterion"], s["precision"], s["updates"], f"{s['wps']:,.0f}", f"{s['ups']:.2f}",
                         f"{mem:,.0f}" if mem else f"RSS {s['peak']['rss_mb']:,.0f}", s["overflows"],
                         s["last"].get("loss_scale", "-"), f"{s['last'].get('loss', float('nan')):.3f}",
                         f"{s['valid_loss']:.3f}" if s["valid_loss"] is not None else "-"])
        note = ("words/s (wps) and updates/s (ups) are fairseq's own, averaged over the logged intervals "
                "after the first (warm-up); peak memory is torch.cuda.max_memory_allocated over the whole "
                "run (benchmarks/fairseq_peak.py); overflows counts fairseq's 'gradient overflow "
                "detected' lines (each one a skipped update). The built-in run does not load the plugin "
                "(checked: no --user-dir, rdrop_fairseq never imported). wps counts the ntokens each "
                "criterion reports, and 'train loss' is each criterion's logged loss: the plugin logs "
                "one copy's loss (comparable with the baseline), fairseq's built-in the sum over both "
                "copies plus the KL, so compare R-Drop speed by ups (same batches). The --bf16 run "
                "goes through benchmarks/fairseq_peak.py --bf16-without-tpu: fairseq 0.12's option "
                "parsing turns --bf16 into --tpu (fairseq issue #4696), which that flag undoes.")
        return md_table(["run", "criterion", "precision", "updates", "wps", "ups", "peak CUDA MB",
                         "overflows", "last loss_scale", "last train loss", "last valid loss"], rows) + "\n\n" + note

    def generate_table(self):
        gen = self.results.get("generate", {})
        if not gen:
            return "not run"
        rows = [[k, v.get("exit", "-"), v.get("hypotheses", "-"), v.get("bleu4", "-") if v.get("bleu4") is not None
                 else "-", v.get("error", "")] for k, v in gen.items()]
        return (md_table(["run", "exit", "hypotheses", "BLEU4 (fairseq, spm removed)", "note"], rows)
                + "\n\nBLEU after a few hundred updates is a smoke signal, not a result.")


# ---- the memory-traffic estimate of docs/performance.md ---------------------------------
def chunked_bytes_per_element(m, b):
    """HBM bytes per logit per copy moved by the current eager chunked path (fused._EagerChunk
    plus backward's grad.mul_), when a chunk does not fit in cache (a GPU's 64 MB chunk does
    not fit its L2); one read per op input, one write per op output, a row re-read inside
    log_softmax counted once. b: bytes per logit (4 fp32, 2 fp16/bf16).
      log_softmax 8, exp 8, sum_v lp 4, S = sum_j lp_j 4 + 4/m, -A = S - m lp 12,
      c_k (mul + sum) 16, B (addcmul) 8, P = sum_j p_j 4 + 4/m, Q (addcmul) 8/m,
      gradient addcmul 12 + b, backward grad.mul_(grad_output) 2b,
      upcast of a half-precision chunk b + 4."""
    return 76 + 16 / m + 3 * b + (b + 4 if b != 4 else 0)


def single_pass_bytes_per_element(b, passes_over_logits=1):
    """A fused kernel that reads each copy's logits ``passes_over_logits`` times and writes
    the gradient once (2 reads when a row of all m copies does not fit in on-chip memory)."""
    return passes_over_logits * b + b


def estimate_table(vocabs=(10000, 32000), m=2, tokens=4096, bandwidth_tb_s=4.8):
    rows = []
    for vocab in vocabs:
        for name, b in (("fp32", 4), ("fp16/bf16", 2)):
            now = chunked_bytes_per_element(m, b) * vocab
            one, two = (single_pass_bytes_per_element(b, k) * vocab for k in (1, 2))
            total = m * tokens / 1e9  # GB per byte-per-token-per-copy
            rows.append([vocab, name, f"{now / 1e6:.2f}", f"{one / 1e6:.3f}", f"{two / 1e6:.3f}",
                         f"{now * total:.1f}", f"{one * total:.2f}", f"{two * total:.2f}",
                         f"{now * total / bandwidth_tb_s:.2f}", f"{one * total / bandwidth_tb_s:.2f}",
                         f"{two * total / bandwidth_tb_s:.2f}"])
    return md_table(["V", "logits", "MB/token/copy now", "1 read + 1 write", "2 reads + 1 write",
                     f"GB per step now ({m} x {tokens} tokens)", "GB, 1R+1W", "GB, 2R+1W",
                     f"ms at {bandwidth_tb_s} TB/s now", "ms 1R+1W", "ms 2R+1W"], rows)


# ---- parsing helpers ------------------------------------------------------------------
def parse_train_log(text):
    inner, epochs, valid = [], [], []
    buckets = {"train_inner": inner, "train": epochs, "valid": valid}
    # fairseq's format ("... | INFO | train | {...}"), or Python's default ("INFO:train:{...}") when
    # something configured logging before fairseq_cli did (fairseq_peak.py --bf16-without-tpu)
    for tag, payload in re.findall(r"(?:\| INFO \| |^INFO:)(train_inner|train|valid)(?: \| |:)(\{.*\})$",
                                   text, flags=re.M):
        buckets[tag].append(json.loads(payload))
    peak = re.findall(r"^PEAK_MEMORY (\{.*\})$", text, flags=re.M)
    if not peak or not (inner or epochs):
        raise StepFailed("train: no fairseq statistics or PEAK_MEMORY line in the log")
    to_f = lambda d: {k: float(v) for k, v in d.items() if re.fullmatch(r"-?[\d.e+-]+|nan|-?inf", str(v))}  # noqa: E731
    inner = [to_f(d) for d in inner]
    steady = inner[1:] or inner
    last = to_f(epochs[-1]) if epochs else inner[-1]
    last = {k.replace("train_", ""): v for k, v in last.items()}
    return {
        "updates": int(last.get("num_updates", inner[-1].get("num_updates", 0) if inner else 0)),
        "wps": mean([d["wps"] for d in steady if "wps" in d]) if steady else last.get("wps", float("nan")),
        "ups": mean([d["ups"] for d in steady if "ups" in d]) if steady else last.get("ups", float("nan")),
        "overflows": len(re.findall(r"gradient overflow detected", text)),
        "finite": all(math.isfinite(v) for d in inner for k, v in d.items() if "loss" in k),
        "last": last,
        "valid_loss": float(valid[-1]["valid_loss"]) if valid else None,
        "peak": json.loads(peak[-1]),
    }


def pytest_summary(text):
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|deselected|error).*?)\s*=*$", text, flags=re.M)
    return found[-1] if found else "no pytest summary line (see the raw log)"


def table_of(text):
    return "\n".join(l for l in text.splitlines() if l.startswith("|"))


def header_lines(text):
    return "\n".join(l for l in text.splitlines() if l.startswith(("machine:", "loss forward", "training step",
                                                                     "fused loss")))


def verdict_lines(text):
    return "\n".join(f"- {l}" for l in text.splitlines() if l.startswith("V="))


def same_losses(what, per_vocab, modes=("builtin", "reference", "fused")):
    """Do ``modes`` report the same loss (relative 1e-5) at every V?"""
    worst, compared = 0.0, False
    for res in per_vocab.values():
        values = [r["loss"] for mode, r in res.items() if mode in modes]
        if len(values) > 1:
            compared = True
            worst = max(worst, (max(values) - min(values)) / max(abs(v) for v in values))
    names = ", ".join({"builtin": "built-in"}.get(m, m) for m in modes)
    if not compared:
        return [f"{what}: {names} give the same loss", "fewer than two of them ran", "n/a"]
    return [f"{what}: {names} give the same loss (relative <= 1e-5)",
            f"max relative spread {worst:.1e}", verdict(worst <= 1e-5)]


def peak(r):
    return r["peak_cuda_mb"] if "peak_cuda_mb" in r else r["peak_rss_mb"]


def verdict(ok):
    return "met" if ok else "MISSED"


def median(xs):
    xs = sorted(xs)
    return (xs[len(xs) // 2] + xs[(len(xs) - 1) // 2]) / 2 if xs else float("nan")


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def data_dir():
    """RDROP_DATA_DIR, else shared/data beside the repo (as the tests), else inside it."""
    for path in (os.environ.get("RDROP_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "shared" / "data"):
        if path and (Path(path) / "multi30k").is_dir():
            return Path(path).resolve()
    raise StepFailed("prepare: no Multi30k data: set RDROP_DATA_DIR to a folder with multi30k/raw/")


def environment_line(device):
    import platform

    import torch

    line = (f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    try:
        import fairseq

        line += f", fairseq {fairseq.__version__}"
    except Exception as err:  # reported, not fatal: the train step will fail and say why
        line += f", fairseq not importable ({err})"
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        line += f"; GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    return line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"])
    ap.add_argument("--out", type=Path, help="folder for report.md, results.json and raw/")
    ap.add_argument("--estimate", action="store_true",
                    help="only print the memory-traffic estimate for a single-pass kernel (no run)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="end within this many seconds (plus the report): each step's timeout is cut to "
                         "what is left, and steps with too little left are not run (and count as failed)")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads of the benchmark children (default: 1 on cpu, 4 on cuda)")
    args = ap.parse_args(argv)
    if args.estimate:
        print(estimate_table())
        return
    if not args.device or not args.out:
        ap.error("--device and --out are required (or --estimate)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():  # never a silent CPU run
            raise SystemExit("gpu_check: --device cuda but torch.cuda.is_available() is False")
    if args.budget_s is not None and args.budget_s < MIN_STEP_S + REPORT_S:
        ap.error(f"--budget-s must be at least {MIN_STEP_S + REPORT_S} seconds, got {args.budget_s:g}")
    check = Check(args.device, args.out, args.budget_s)
    failed = check.run_all(args.threads or (4 if args.device == "cuda" else 1))
    print(f"[gpu_check] report: {check.out / 'report.md'}", file=sys.stderr)
    if failed:
        raise SystemExit(f"gpu_check: FAILED steps: {', '.join(failed)}")


if __name__ == "__main__":
    main()
