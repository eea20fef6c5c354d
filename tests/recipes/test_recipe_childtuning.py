"""recipes/childtuning/run.py: configs over seeds with mean and std, and at most N jobs at a time."""
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from helpers import CT_TINY as TINY, REPO


def test_recipe_runs_configs_over_seeds_and_reports_mean_std(translation_bin, childtuning_pretrained, tmp_path):
    """recipes/childtuning/run.py, tiny: every config's command parses with fairseq-train's
    parser (dry run); R-Drop + ChildTuning-D trains 2 updates for 2 seeds (a mask each)."""
    from fairseq import options

    recipe = [sys.executable, str(REPO / "recipes" / "childtuning" / "run.py"), str(translation_bin),
              "--checkpoint", str(childtuning_pretrained), "--work", str(tmp_path / "work"), "--seeds", "1", "2",
              "--criterion", "--criterion label_smoothed_cross_entropy --label-smoothing 0.1",
              "--rdrop-criterion", "--criterion label_smoothed_cross_entropy_with_rdrop --label-smoothing 0.1 --rdrop-alpha 1"]
    train = ["--", *TINY, "--max-tokens", "1500", "--max-update", "2", "--cpu", "--lr", "1e-3", "--log-format", "simple"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    dry = subprocess.run([*recipe, "--dry-run", *train], capture_output=True, text=True, env=env, check=True).stdout
    commands = [line[2:].split() for line in dry.splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 * (1 + 5)
    for cmd in commands:
        argv = cmd[cmd.index("-m") + 2:]
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        assert args.seed in (1, 2) and args.restore_file == str(childtuning_pretrained)
    out = subprocess.run([*recipe, "--configs", "rdrop_childtuning_d", *train], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    rows = dict(re.findall(r"^(rdrop_childtuning_d)\s+(.+)$", out.stdout, flags=re.M))
    assert len(rows) == 1, out.stdout[-2000:]
    results = __import__("json").loads((tmp_path / "work" / "results.json").read_text())
    for config, row in rows.items():
        mean, std, *per_seed = map(float, row.split())
        values = list(results["scores"][config].values())
        assert per_seed == pytest.approx(values, abs=1e-4) and len(values) == 2
        assert mean == pytest.approx(np.mean(values), abs=1e-4) and std == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    assert "ChildTuning-D: p=0.3" in (tmp_path / "work" / "rdrop_childtuning_d" / "seed2" / "train.log").read_text()


STANDIN = ("import os, sys, time; print('start', time.time(), os.environ.get('OMP_NUM_THREADS')); "
           "time.sleep(2); print('end', time.time())")


def test_recipe_parallel_runs_at_most_n_jobs_at_a_time_one_thread_each(tmp_path, monkeypatch):
    """run.py --parallel 2 on stand-in jobs: never more than 2 at a time, one thread each; finished
    jobs are skipped and a failure still stops it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    jobs = [([sys.executable, "-c", STANDIN], tmp_path / f"job{i}" / "log") for i in range(3)]
    from recipes.childtuning import run as sweep

    sweep.run_jobs(jobs, 2, dry_run=False)
    events = []
    for cmd, log in jobs:
        header, start, end = log.read_text().splitlines()
        assert header == shlex.join(cmd)  # the log says what made it
        assert start.split()[2] == "1"  # OMP_NUM_THREADS=1 for jobs side by side
        events += [(float(start.split()[1]), 1), (float(end.split()[1]), -1)]
        assert log.with_name("log.done").exists()
    running, most = 0, 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same time
        running += step
        most = max(most, running)
    assert most == 2  # the first two side by side, the third after one of them

    # finished jobs are not rerun; a failing one exits naming its log, and leaves no marker
    bad = tmp_path / "bad" / "log"
    with pytest.raises(SystemExit, match="failed.*bad/log"):
        sweep.run_jobs(jobs + [([sys.executable, "-c", "raise SystemExit(3)"], bad)], 2, dry_run=False)
    assert not bad.with_name("log.done").exists()
