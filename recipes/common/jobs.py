"""Training commands side by side on a few cores: the pool behind the recipes that sweep runs x
seeds (classification/run.py, childtuning/run.py).

Several jobs at once run with one thread each: on a 2-core machine two one-thread trainings
finish sooner than two that fight over both cores. Which jobs are already done, and what marks a
job done, is the caller's (each recipe keeps its own markers).
"""
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

from recipes.common.progress import EpochProgress


def _flag_value(cmd, flag, type=int):
    """The value after ``flag`` in ``cmd`` (an integer unless ``type`` says otherwise), or None."""
    if flag in cmd[:-1]:
        return type(cmd[cmd.index(flag) + 1])
    return None


class _Running:
    def __init__(self, name, cmd, log, env, echo, cwd):
        self.name, self.log, self.start = name, log, time.time()
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{name}] started, its whole log in {log}", flush=True)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=cwd)
        self.pump = threading.Thread(target=self._copy, args=(echo,), daemon=True)
        self.pump.start()

    def _copy(self, echo):
        cmd = list(self.proc.args)
        progress = EpochProgress(_flag_value(cmd, "--max-epoch"), _flag_value(cmd, "--patience") or 0,
                                 metric=_flag_value(cmd, "--best-checkpoint-metric", str) or "loss",
                                 maximize="--maximize-best-checkpoint-metric" in cmd)
        with open(self.log, "w", encoding="utf-8", buffering=1) as f:
            f.write(shlex.join(cmd) + "\n")  # the log says what made it
            for line in self.proc.stdout:
                f.write(line)
                shown = progress.feed(line) if echo else None
                if shown:
                    print(f"[{self.name}] {shown}", flush=True)


def run_jobs(jobs, parallel, on_done=None, echo=False, env=None, cwd=None):
    """Run each ``(name, cmd, log)`` job, up to ``parallel`` at a time in list order, the next
    starting as soon as one ends. A job's log holds its command line, then its output (``echo``:
    one line per epoch on the console too, prefixed ``[name]``: ``progress.py``). ``on_done(name, log, seconds)`` follows each success.
    A failure stops the jobs still running and exits naming the failed job's log and showing its
    end; the jobs not yet started never start. ``env``: variables added to the environment."""
    base = dict(os.environ, **(env or {}), PYTHONUNBUFFERED="1")
    if parallel > 1:
        base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    todo, running = list(jobs), []
    try:
        while todo or running:
            while todo and len(running) < parallel:
                name, cmd, log = todo.pop(0)
                running.append(_Running(name, [str(c) for c in cmd], Path(log), base, echo, cwd))
            time.sleep(0.2)
            for job in [j for j in running if j.proc.poll() is not None]:
                running.remove(job)
                job.pump.join()
                if job.proc.returncode != 0:
                    end = "".join(job.log.read_text(encoding="utf-8").splitlines(keepends=True)[-15:])
                    raise SystemExit(f"{job.name} failed (exit {job.proc.returncode}); the end of {job.log}:\n{end}")
                if on_done:
                    on_done(job.name, job.log, time.time() - job.start)
    finally:
        for job in running:
            job.proc.terminate()
            job.proc.wait()
            job.pump.join()
