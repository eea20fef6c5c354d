"""benchmarks/gpu_check.py: its CPU dry run end to end, and that failures are loud.

The dry run is the same script a GPU machine runs (--device cuda), at tiny sizes and with
fp32 training; it checks the plumbing (every step runs, every section is written, the
built-in run really is fairseq alone) so the one prepared GPU run does not die on a typo.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from benchmarks import gpu_check
from helpers import REPO


def test_cpu_dry_run_writes_every_section(shared_data, tmp_path):
    out = tmp_path / "gpu_results"
    env = dict(os.environ, RDROP_DATA_DIR=str(shared_data), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    report = (out / "report.md").read_text()
    for section in gpu_check.SECTIONS:
        assert section in report, section
    assert "FAILED steps: none" in report and "CPU dry run" in report
    results = json.loads((out / "results.json").read_text())
    assert all(ok for ok, _, _ in results["status"].values()), results["status"]
    assert set(results["status"]) == {"numerics", "chunk", "loss", "step", "prepare", "generate",
                                      "train-baseline-fp32", "train-builtin-fp32", "train-plugin-fp32",
                                      "train-plugin-bf16"}
    # the numbers come from the real runs: the built-in is fairseq alone, the plugin replaced it
    train = results["train"]
    assert train["builtin-fp32"]["peak"]["plugin_loaded"] is False
    assert train["plugin-fp32"]["peak"]["plugin_loaded"] is True
    assert train["baseline-fp32"]["peak"]["plugin_loaded"] is False
    assert all(s["updates"] == 3 and s["overflows"] == 0 for s in train.values())
    assert train["plugin-bf16"]["precision"] == "--bf16" and "'bf16': True" in (out / "raw" / "train-plugin-bf16.log").read_text()
    n_test = results["prepare"]["test_sentences"]
    assert all(g["hypotheses"] == n_test for g in results["generate"].values())
    # on the same logits built-in, reference and fused agree on the loss (in a training step the
    # built-in's [x; x] copies draw other dropout masks than the plugin's interleaved ones, so the
    # step benchmark's losses differ by design); the chunk sweep's size was used
    alone = [r["loss"] for r in next(iter(results["loss"]["results"].values())).values()
             if r["mode"] in ("builtin", "reference", "fused")]
    assert len(alone) == 3 and max(alone) - min(alone) <= 1e-5 * abs(alone[0])
    assert results["loss"]["chunk_mb"] == results["chunk"]["best_mb"]
    for name in ("numerics", "chunk", "loss", "step", "prepare", "train-plugin-fp32"):
        assert (out / "raw" / f"{name}.log").stat().st_size > 0


def test_a_failing_step_is_named_and_fails_the_run(tmp_path):
    check = gpu_check.Check("cpu", tmp_path)
    with pytest.raises(gpu_check.StepFailed, match=r"^broken: exit 3 \(see raw/broken.log\)"):
        check.run("broken", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], timeout=60)
    assert "boom" in (tmp_path / "raw" / "broken.log").read_text()
    with pytest.raises(gpu_check.StepFailed, match="slow: timed out after 1 s"):
        check.run("slow", [sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    check.step("numerics", lambda: check.run("numerics", [sys.executable, "-c", "raise SystemExit(1)"], 60))
    assert check.status["numerics"][0] is False and "numerics: exit 1" in check.status["numerics"][2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_an_error_not_a_cpu_run(tmp_path):
    with pytest.raises(SystemExit, match="torch.cuda.is_available.. is False"):
        gpu_check.main(["--device", "cuda", "--out", str(tmp_path)])
    assert not (tmp_path / "report.md").exists()


def test_train_log_parser_counts_overflows_and_flags_nan():
    log = "\n".join([
        '2026 | INFO | fairseq.trainer | NOTE: gradient overflow detected, ignoring gradient, setting loss scale to: 64.0',
        '2026 | INFO | train_inner | {"epoch": 1, "update": 0.1, "loss": "9.5", "wps": "1000", "ups": "2", "loss_scale": "64"}',
        '2026 | INFO | train_inner | {"epoch": 1, "update": 0.2, "loss": "nan", "wps": "3000", "ups": "4", "loss_scale": "64"}',
        'INFO:valid:{"epoch": 1, "valid_loss": "9.1"}',  # Python's default logging format
        'PEAK_MEMORY {"cuda_mb": 100.0, "rss_mb": 5.0, "seconds": 1.0, "plugin_loaded": false}',
    ])
    stats = gpu_check.parse_train_log(log)
    assert stats["overflows"] == 1 and stats["finite"] is False
    assert stats["wps"] == 3000.0 and stats["valid_loss"] == 9.1  # the first interval is warm-up
    with pytest.raises(gpu_check.StepFailed, match="no fairseq statistics"):
        gpu_check.parse_train_log("nothing here")


def test_budget_cuts_timeouts_and_skips_steps_it_cannot_fit(tmp_path):
    check = gpu_check.Check("cpu", tmp_path, budget_s=100)
    assert check.timeout_for("x", 240) == 240  # no deadline before run_all starts the clock
    check.deadline = time.time() + gpu_check.REPORT_S + gpu_check.MIN_STEP_S + 1
    assert gpu_check.MIN_STEP_S <= check.timeout_for("x", 240) <= gpu_check.MIN_STEP_S + 1
    assert check.timeout_for("x", 3) == 3
    check.deadline = time.time() + gpu_check.REPORT_S + gpu_check.MIN_STEP_S - 1
    check.step("numerics", lambda: check.run("numerics", [sys.executable, "-c", "print('ran')"], 60))
    ok, _, message = check.status["numerics"]
    assert not ok and message == "numerics: not run, the time budget (--budget-s 100) is spent"
    assert not (tmp_path / "raw" / "numerics.log").exists()  # nothing was started
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--budget-s", "5"])
    assert exit_info.value.code == 2


def test_a_report_written_midway_says_it_is_unfinished(tmp_path):
    check = gpu_check.Check("cpu", tmp_path)
    check.progressive = True  # as on CUDA, where the steps run one after another
    check.step("numerics", lambda: None)
    report = (tmp_path / "report.md").read_text()
    assert "**Unfinished**: written after step `numerics`" in report
    assert "| numerics | ok |" in report and "| chunk | FAILED |" in report  # chunk had not run
