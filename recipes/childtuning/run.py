"""Baseline / ChildTuning-F / ChildTuning-D / R-Drop / R-Drop + ChildTuning-D, over seeds.

    python recipes/childtuning/run.py DATA_BIN --checkpoint PRETRAINED.pt --work WORK \\
        --seeds 1 2 3 --reserve-p 0.3 --metric accuracy --maximize \\
        --criterion "--criterion sentence_prediction" \\
        --rdrop-criterion "--criterion sentence_prediction_with_rdrop --rdrop-alpha 1" \\
        -- --task sentence_prediction --arch roberta_base --num-classes 2 ...

Everything after ``--`` is the fine-tuning command's own flags (task, arch, data options,
lr, schedule, batch size; not --optimizer, --seed, --save-dir or the criterion, which this
script sets per run). Each run is ``fairseq-train DATA_BIN`` with those flags plus:

    baseline             --optimizer adam             + --criterion flags
    childtuning_f        --optimizer childtuning_adam --childtuning-mode F + --criterion flags
    childtuning_d        --optimizer childtuning_adam --childtuning-mode D + --criterion flags
    rdrop                --optimizer adam             + --rdrop-criterion flags
    rdrop_childtuning_d  --optimizer childtuning_adam --childtuning-mode D + --rdrop-criterion flags

With --checkpoint, each run starts from it (--restore-file ... --reset-optimizer
--reset-dataloader --reset-meters, fairseq's fine-tuning idiom). The D mask is computed per
seed (python -m rdrop_fairseq.childtuning_mask, the baseline criterion: the Fisher of the
task's loss) and shared by childtuning_d and rdrop_childtuning_d. The score of a run is the
best --metric over its validation lines; the summary prints mean +- std (n-1) per config and
writes WORK/results.json. Finished runs (a .done marker) are not rerun. --parallel N runs up to N
jobs at a time (the masks of all seeds first, then the training runs), one thread each.
"""
import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path

CONFIGS = ["baseline", "childtuning_f", "childtuning_d", "rdrop", "rdrop_childtuning_d"]
REPO = Path(__file__).resolve().parents[2]
USER_DIR = str(REPO / "rdrop_fairseq")
sys.path.insert(0, str(REPO))
from recipes.common.jobs import run_jobs as common_run_jobs  # noqa: E402
from recipes.common.seeds import mean_std  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s DATA --work DIR [options] -- FAIRSEQ_TRAIN_FLAGS...")
    p.add_argument("data", help="fairseq data-bin directory (the first argument of fairseq-train)")
    p.add_argument("--checkpoint", help="pre-trained fairseq checkpoint to fine-tune (default: from scratch)")
    p.add_argument("--work", required=True, help="output directory (masks, logs, results.json)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    p.add_argument("--reserve-p", type=float, default=0.3, help="ChildTuning's p (F and D)")
    p.add_argument("--criterion", default="--criterion cross_entropy",
                   help="baseline criterion flags (one shell-quoted string)")
    p.add_argument("--rdrop-criterion", default="--criterion label_smoothed_cross_entropy_with_rdrop --rdrop-alpha 1",
                   help="R-Drop criterion flags (one shell-quoted string)")
    p.add_argument("--metric", default="loss", help="validation metric to report (a key of fairseq's valid line)")
    p.add_argument("--maximize", action="store_true", help="higher --metric is better (accuracy, bleu)")
    p.add_argument("--keep-checkpoints", action="store_true", help="do not pass --no-save to the runs")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="run up to N jobs at a time, one thread each (OMP_NUM_THREADS=1 when N > 1)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    # everything after the first "--" is the fine-tuning command's flags, untouched
    split = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:split])
    args.train_args = argv[split + 1:]
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in args.configs if c not in CONFIGS]
    if bad:
        p.error(f"--configs: unknown {bad}; choose from {CONFIGS}")
    for flag in ("--optimizer", "--seed", "--save-dir", "--criterion", "--restore-file"):
        if flag in args.train_args:
            p.error(f"{flag} after --: this script sets it per run")
    if not 0 < args.reserve_p <= 1:
        p.error(f"--reserve-p must be in (0, 1], got {args.reserve_p}")
    if args.parallel < 1:
        p.error(f"--parallel must be >= 1, got {args.parallel}")
    return args


def run_flags(config, args, seed, mask):
    crit = shlex.split(args.rdrop_criterion if config.startswith("rdrop") else args.criterion)
    if config in ("baseline", "rdrop"):
        opt = ["--optimizer", "adam"]
    else:
        mode = "F" if config == "childtuning_f" else "D"
        opt = ["--optimizer", "childtuning_adam", "--childtuning-mode", mode,
               "--childtuning-reserve-p", str(args.reserve_p)]
        if mode == "D":
            opt += ["--childtuning-mask", str(mask)]
    start = ["--restore-file", args.checkpoint, "--reset-optimizer", "--reset-dataloader", "--reset-meters"] \
        if args.checkpoint else []
    return [args.data, "--user-dir", USER_DIR, *args.train_args, *crit, *opt, *start, "--seed", str(seed)]


def mask_command(args, seed, mask):
    start = ["--restore-file", args.checkpoint] if args.checkpoint else []
    return [sys.executable, "-m", "rdrop_fairseq.childtuning_mask", args.data, "--user-dir", USER_DIR,
            *args.train_args, *shlex.split(args.criterion), "--optimizer", "childtuning_adam",
            "--childtuning-mode", "D", "--childtuning-reserve-p", str(args.reserve_p),
            "--childtuning-mask", str(mask), *start, "--seed", str(seed)]


def run_jobs(jobs, parallel, dry_run):
    """Each (cmd, log) job not done before (its ``log.done`` marker), up to ``parallel`` at a time
    in list order (recipes/common/jobs.py: the first failure stops the rest, naming its log);
    ``dry_run``: print the commands only."""
    todo = []
    for cmd, log in jobs:
        if dry_run:
            print("$ " + shlex.join(str(c) for c in cmd), flush=True)
        elif Path(f"{log}.done").exists():
            print(f"  (done before: {log})", flush=True)
        else:
            todo.append((str(log), cmd, log))
    if todo:
        common_run_jobs(todo, parallel, on_done=lambda _name, log, _seconds: Path(f"{log}.done").touch(), echo=True,
                        env={"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}, cwd=REPO)


def best_metric(log, metric, maximize):
    """Best value of `metric` over fairseq's validation lines (simple/json/tqdm formats)."""
    values = []
    for line in Path(log).read_text().splitlines():
        if "| valid |" in line or "[valid][INFO]" in line:
            m = re.search(rf"(?:\| |\"){re.escape(metric)}\"?[: ]+\"?([-\d.]+)", line)
            if m:
                values.append(float(m.group(1)))
    if not values:
        raise SystemExit(f"run.py: no '{metric}' in the validation lines of {log}")
    return max(values) if maximize else min(values)


def main(argv=None):
    args = parse_args(argv)
    work = Path(args.work)
    mask = {seed: work / "masks" / f"seed{seed}.pt" for seed in args.seeds}
    # every mask before any training run: a D run needs its seed's mask
    if any(c.endswith("childtuning_d") for c in args.configs):
        run_jobs([(mask_command(args, seed, mask[seed]), work / "masks" / f"seed{seed}.log") for seed in args.seeds],
                 args.parallel, args.dry_run)
    logs, jobs = {}, []
    for seed in args.seeds:
        for config in args.configs:
            log = logs[config, seed] = work / config / f"seed{seed}" / "train.log"
            save = ["--save-dir", str(log.parent)] + ([] if args.keep_checkpoints else ["--no-save"])
            jobs.append(([sys.executable, "-m", "fairseq_cli.train", *run_flags(config, args, seed, mask[seed]), *save],
                         log))
    run_jobs(jobs, args.parallel, args.dry_run)
    if args.dry_run:
        return
    scores = {c: {seed: best_metric(logs[c, seed], args.metric, args.maximize) for seed in args.seeds}
              for c in args.configs}
    print(f"\nbest valid {args.metric} ({'max' if args.maximize else 'min'} over validations), "
          f"seeds {args.seeds}, p={args.reserve_p}")
    print(f"{'config':<22}{'mean':>10} {'+- std':>10}   per seed")
    for config, by_seed in scores.items():
        m, sd = mean_std(list(by_seed.values()))
        print(f"{config:<22}{m:>10.4f} {sd:>10.4f}   " + " ".join(f"{v:.4f}" for v in by_seed.values()))
    results = dict(metric=args.metric, maximize=args.maximize, reserve_p=args.reserve_p, seeds=args.seeds,
                   scores=scores, train_args=args.train_args, criterion=args.criterion,
                   rdrop_criterion=args.rdrop_criterion)
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
