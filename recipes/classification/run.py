"""Sentence-level R-Drop (and ChildTuning) on real data, on CPU: CoLA and SST-2 (classification),
STS-B (regression) and GoEmotions (28-label multi-label).

    RDROP_DATA_DIR=../shared/data python recipes/classification/run.py --dataset sst2 --seeds 1 2 3
    RDROP_DATA_DIR=../shared/data python recipes/classification/run.py --dataset cola --setting minilm

Prepares the data (prepare.py), trains per run and seed with identical settings (baseline, R-Drop;
for GoEmotions also R-Drop with ``--rdrop-divergence softmax``; ChildTuning with ``--runs``) either a
2-layer d=128 RoBERTa-architecture encoder (from scratch, or pre-trained by pretrain.py) or a
converted BERT encoder (``--setting minilm``: all-MiniLM-L6-v2 through convert_bert.py), keeps each
run's checkpoint of the best dev epoch (by the dataset's metric), reads the per-epoch dev metrics
from the logs, prints mean +- std over seeds of the best and the last epoch, and plots the dev
curves. Resumable: a finished run (seed) is skipped on a rerun with the same settings. score.py
scores the kept checkpoints on another labelled file, or writes their predictions for an
unlabelled one.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# by package path: other recipes have a prepare.py too (one process may load several)
from recipes.classification import convert_bert  # noqa: E402
from recipes.classification.model import SMALL, TINY, model_flags  # noqa: E402
from recipes.classification.prepare import prepare  # noqa: E402
from recipes.classification.pretrain import default_workdir as pretrain_workdir, pretrain  # noqa: E402
from recipes.common.data import Stages, atomic_path  # noqa: E402
from recipes.common.fairseq_flags import KEEP_LAST_BATCH  # noqa: E402
from recipes.common.jobs import run_jobs  # noqa: E402
from recipes.common.seeds import describe_gain, mean_std, paired_gain  # noqa: E402
from recipes.common.plot import plot_runs, read_valid_stats  # noqa: E402
from recipes.common.settings import apply_overrides, check_same_config  # noqa: E402

# ---- what each dataset is ----------------------------------------------------------------------
DATASETS = {
    "cola": dict(task="sentence_prediction", pair=False, num_classes=2, metric="valid_mcc",
                 report=["--report-mcc"], extra_metrics=("valid_accuracy",)),
    "sst2": dict(task="sentence_prediction", pair=False, num_classes=2, metric="valid_accuracy",
                 report=[], extra_metrics=()),
    "stsb": dict(task="sentence_prediction", pair=True, num_classes=1, metric="valid_pearson",
                 report=["--regression-target", "--report-pearson-and-spearman"],
                 extra_metrics=("valid_spearman",)),
    "goemotions": dict(task="sentence_prediction_multilabel", pair=False, num_classes=None,
                       metric="valid_macro_f1", report=[],
                       extra_metrics=("valid_micro_f1", "valid_exact_match")),
}
# ---- the model and optimisation (shared by every run): model.py ----------------------------------
SETTINGS = {
    "tiny": {  # tests/recipes/test_recipe_classification.py: a slice of the corpus, a few updates
        ds: dict(TINY, max_lines={"train": 160, "valid": 48}, max_epoch=2, rdrop_alpha=1.0)
        for ds in DATASETS
    },
    "cpu": {
        # lr 5e-4 (model.py) checked on dev (baseline, seed 1) against 1e-3: SST-2 accuracy 79.8 vs 79.2,
        # STS-B Pearson 21.7 vs 21.0.
        "sst2": dict(SMALL, max_lines={"train": 20000}, max_epoch=3, rdrop_alpha=1.0),
        # STS-B: 5 epochs, set by CPU cost, not chosen on dev.
        "stsb": dict(SMALL, max_lines=None, max_epoch=5, rdrop_alpha=1.0),
        # GoEmotions, chosen on dev (baseline, seed 1, 3 epochs; dev macro-F1): all 43,410 comments at
        # lr 1e-3 (27.0) over lr 5e-4 (22.8), and over fine-tuning the pre-trained encoder (lr 1e-3:
        # 24.1, 5e-4: 22.0); 8,000 comments at 5e-4 (--train-lines 8000 --lr 5e-4) reach 2-7: too
        # few examples of the rare labels.
        "goemotions": dict(SMALL, lr=1e-3, max_lines=None, max_epoch=3, rdrop_alpha=1.0),
    },
}
# Fine-tuning the encoder that pretrain.py pre-trains (masked_lm) instead of training from scratch:
# the same data, epochs and alpha as "cpu", the pre-training's dictionary, and the ChildTuning
# runs' reserve_p (the ChildTuning paper's range is 0.1-0.3; not tuned).
SETTINGS["pretrained"] = {ds: dict(cfg, pretrained="cpu", childtuning_reserve_p=0.3)
                          for ds, cfg in SETTINGS["cpu"].items()}
# STS-B: 3 epochs, chosen on dev: fine-tuned for 5 (baseline, seed 1, lr 5e-4), dev Pearson peaked at
# epoch 3 (22.9) and fell after (21.3 at 5); lr 5e-4 was chosen over 1e-4 on the same run (best 22.9
# vs 20.5; SST-2: 79.9 vs 77.9 accuracy).
SETTINGS["pretrained"]["stsb"]["max_epoch"] = 3
SETTINGS["tiny-pretrained"] = {ds: dict(cfg, pretrained="tiny", childtuning_reserve_p=0.3)
                               for ds, cfg in SETTINGS["tiny"].items()}
# Fine-tuning a real pre-trained encoder: all-MiniLM-L6-v2 (6 layers, d = 384, 22.7M parameters),
# converted by convert_bert.py, with its WordPiece. The optimisation of fairseq's RoBERTa GLUE recipe
# (Adam (0.9, 0.98), eps 1e-6, weight decay 0.1, 6% warm-up, polynomial decay; dropout 0.1, as the
# BERT was pre-trained) with BERT's GLUE values as the starting point: batch 32, 3 epochs, lr 5e-5
# (BERT's paper picks lr on dev from {2e-5, 3e-5, 4e-5, 5e-5}; a 6-layer model sits at the high end).
# --lr, --batch-size, --max-epoch, --rdrop-alpha (R-Drop's GLUE range {0.1, 0.5, 1.0}) and
# --reserve-p (ChildTuning's {0.1, 0.2, 0.3}) override them for the choice on dev.
MINILM = dict(encoder="minilm", dropout=0.1, attention_dropout=0.1, lr=5e-5, warmup_ratio=0.06, batch_size=32,
              weight_decay=0.1, max_epoch=3, rdrop_alpha=1.0, childtuning_reserve_p=0.3)
SETTINGS["minilm"] = {
    # CoLA, all 8,551 sentences; chosen on dev (Matthews correlation, seed 1): the baseline's lr at
    # 3 epochs from 2e-5 / 3e-5 / 5e-5 / 1e-4 / 2e-4 (11.1 / 20.9 / 24.7 / 34.2 / 28.9), then its
    # epochs at lr 1e-4 (3: 34.2, 5: 35.8), then R-Drop's alpha there (0.1 / 0.5 / 1.0: 35.5 / 36.3 /
    # 36.5). ChildTuning's reserve_p stays 0.3 (not tuned: CPU).
    "cola": dict(MINILM, max_lines=None, lr=1e-4, max_epoch=5, rdrop_alpha=1.0),
    # STS-B, all 5,749 pairs; chosen on dev (Pearson, seed 1, 3 epochs): the baseline's lr from 5e-5 /
    # 1e-4 / 2e-4 (86.3 / 86.9 / 86.5). Epochs (3), alpha (1.0) and reserve_p (0.3) not tuned: CPU.
    "stsb": dict(MINILM, max_lines=None, lr=1e-4),
    "sst2": dict(MINILM, max_lines={"train": 20000}),  # the first 20,000 of 67,349 (cost)
    "goemotions": dict(MINILM, max_lines={"train": 20000}),  # the first 20,000 of 43,410 (cost)
}
# the tests': a small random BERT (--bert-dir) and the tiny setting's slices
SETTINGS["tiny-minilm"] = {ds: dict(MINILM, encoder="bert-dir", max_lines={"train": 160, "valid": 48}, max_epoch=2,
                                    batch_size=16, lr=1e-4) for ds in DATASETS}
RUNS = {  # run name -> criterion arguments (the R-Drop alpha is filled in from the setting)
    "baseline": ["--criterion", "sentence_prediction"],
    "rdrop": ["--criterion", "sentence_prediction_with_rdrop", "--rdrop-alpha", "{alpha}"],
}
# ChildTuning (issue: dropout on the gradient), on top of the baseline or R-Drop criterion;
# --runs selects them. The D runs use the seed's mask, computed once with the baseline criterion
# (the Fisher of the task loss) on the starting model, and shared by both D runs.
CHILDTUNING_RUNS = {"childtuning_f": ("baseline", "F"), "childtuning_d": ("baseline", "D"),
                    "rdrop_childtuning_d": ("rdrop", "D")}
GOEMOTIONS_RUNS = {  # fairseq's sentence_prediction has no multi-label head: alpha 0 is the baseline
    "baseline": ["--criterion", "sentence_prediction_with_rdrop", "--rdrop-alpha", "0"],
    "rdrop": ["--criterion", "sentence_prediction_with_rdrop", "--rdrop-alpha", "{alpha}"],
    "rdrop_softmax": ["--criterion", "sentence_prediction_with_rdrop", "--rdrop-alpha", "{alpha}",
                      "--rdrop-divergence", "softmax"],
}


def runs_for(dataset):
    return GOEMOTIONS_RUNS if dataset == "goemotions" else RUNS


def all_runs(dataset):
    return [*runs_for(dataset), *CHILDTUNING_RUNS]


def criterion_of(dataset, run):
    return runs_for(dataset)[CHILDTUNING_RUNS[run][0] if run in CHILDTUNING_RUNS else run]


def optimizer_flags(cfg, run, mask):
    if run not in CHILDTUNING_RUNS:
        return ["--optimizer", "adam"]
    mode = CHILDTUNING_RUNS[run][1]
    return ["--optimizer", "childtuning_adam", "--childtuning-mode", mode,
            "--childtuning-reserve-p", str(cfg["childtuning_reserve_p"]),
            *(["--childtuning-mask", str(mask)] if mode == "D" else [])]


def count_lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def architecture_flags(cfg, encoder_dir=None):
    """The model's fairseq flags: a converted BERT's sizes (its bert_config.json) or model.py's."""
    if not cfg.get("encoder"):
        return model_flags(cfg)
    config = json.loads((Path(encoder_dir) / "bert_config.json").read_text())
    return [*convert_bert.model_flags(config), "--dropout", str(cfg["dropout"]),
            "--attention-dropout", str(cfg["attention_dropout"])]


def best_metric(dataset):
    """fairseq's --best-checkpoint-metric of the dataset: its dev metric's name in the log."""
    return DATASETS[dataset]["metric"][len("valid_"):]


def train_command(bin_dir, data_bin, save_dir, dataset, cfg, run, seed, n_train, checkpoint=None, mask=None,
                  encoder_dir=None):
    """fairseq-train for one run and seed; ``checkpoint``: the pre-trained encoder to fine-tune
    (``encoder_dir``: its convert_bert.py folder, for a converted BERT). The run keeps one
    checkpoint, ``<save_dir>/checkpoint_best.pt``: the weights of its best dev epoch by the dataset's
    metric, without optimizer state."""
    spec = DATASETS[dataset]
    updates = math.ceil(n_train / cfg["batch_size"]) * cfg["max_epoch"]
    cmd = [
        str(bin_dir / "fairseq-train"), str(data_bin), "--user-dir", str(REPO / "rdrop_fairseq"),
        "--task", spec["task"], *architecture_flags(cfg, encoder_dir), "--init-token", "0",
        # a pair as RoBERTa was pre-trained, <s> a </s> </s> b </s>; as BERT was, [CLS] a [SEP] b [SEP]
        *(["--separator-token", "2"] if spec["pair"] and not cfg.get("encoder") else []),
        *(["--num-classes", str(spec["num_classes"])] if spec["num_classes"] else []),
        "--shorten-method", "truncate",
        *optimizer_flags(cfg, run, mask), "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
        "--weight-decay", str(cfg["weight_decay"]), "--clip-norm", "0.0",
        "--lr-scheduler", "polynomial_decay", "--lr", str(cfg["lr"]),
        "--total-num-update", str(updates), "--warmup-updates", str(max(1, int(cfg["warmup_ratio"] * updates))),
        "--batch-size", str(cfg["batch_size"]), *KEEP_LAST_BATCH,
        "--max-epoch", str(cfg["max_epoch"]), "--seed", str(seed), "--save-dir", str(save_dir),
        "--no-epoch-checkpoints", "--no-last-checkpoints", "--no-save-optimizer-state",
        "--best-checkpoint-metric", best_metric(dataset), "--maximize-best-checkpoint-metric",
        "--log-format", "json", "--log-interval", "50", "--cpu", "--num-workers", "0",
        *spec["report"],
        # fairseq's fine-tuning idiom: the encoder's weights, a new head, fresh optimizer and counters
        *(["--restore-file", str(checkpoint), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
           "--reset-lr-scheduler"] if checkpoint else []),
    ]
    cmd += [a.format(alpha=cfg["rdrop_alpha"]) for a in criterion_of(dataset, run)]
    return cmd


def convert_encoder(workdir, bert_dir=None):
    """The converted BERT of an encoder setting, once per work folder: ``<workdir>/encoder/`` with
    model.pt, dict.txt, vocab.txt, bert_config.json (convert_bert.py; default BERT: the package's)."""
    target = workdir / "encoder"

    def convert():  # in a process of its own: importing fairseq's tasks sets the root logger to DEBUG
        with atomic_path(target) as tmp:
            subprocess.run([sys.executable, str(REPO / "recipes" / "classification" / "convert_bert.py"),
                            *(["--bert-dir", str(bert_dir)] if bert_dir else []), "--out", str(tmp)], check=True)

    Stages(workdir / "stages").run("convert", convert)
    return target


def mask_command(childtuning_d_cmd):
    """The ChildTuning-D mask of one seed: rdrop_fairseq.childtuning_mask with the childtuning_d
    run's own flags (same data, model, starting checkpoint, baseline criterion, reserve_p and
    --childtuning-mask path)."""
    return [sys.executable, "-m", "rdrop_fairseq.childtuning_mask", *childtuning_d_cmd[1:]]


def train_all(jobs, parallel, stages):
    """Run the (name, cmd, out_dir) jobs not yet done, ``parallel`` at a time (recipes/common/jobs.py);
    each records its wall seconds and its stage marker when it ends."""
    todo = []
    for name, cmd, out in jobs:
        if stages.is_done(name):
            print(f"[stage] {name}: already done, skipped", flush=True)
        else:
            todo.append((name, cmd, out / "train.log"))

    def done(name, log, seconds):
        (log.parent / "train_seconds.txt").write_text(f"{seconds:.1f}\n")
        stages.marker(name).write_text("done\n")

    run_jobs(todo, parallel, on_done=done, echo=True)


def child_cpu_seconds(cmd):
    """CPU seconds (user + sys) of one fairseq-train run: on a shared machine a better measure
    of what the run costs on a free core than its wall time."""
    import resource

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def estimate(bin_dir, data_bin, workdir, dataset, cfg, seeds, parallel, n_train, n_valid, updates, runs,
             checkpoint=None, encoder_dir=None):
    """Time ``updates`` and 2x``updates`` updates of every run kind (seed 1), and extrapolate the
    setting's full cost: startup + its updates + one validation per epoch (a validation pass
    costs about a third of a training update per batch: forward only). A ChildTuning-D run is
    timed as its F counterpart (the same work per update, with a fixed instead of a fresh mask);
    its seed's mask is counted as one epoch of baseline-sized steps (R-Drop's update taken as 1.7
    baseline ones where only rdrop_childtuning_d is timed)."""
    per_run = {}
    for run in runs:
        timed = {"childtuning_d": "childtuning_f", "rdrop_childtuning_d": "rdrop"}.get(run, run)
        times = []
        for n in (updates, 2 * updates):
            cmd = train_command(bin_dir, data_bin, workdir / "estimate", dataset, cfg, timed, seeds[0], n_train,
                                checkpoint, encoder_dir=encoder_dir)
            times.append(child_cpu_seconds(cmd + ["--max-update", str(n), "--disable-validation", "--no-save"]))
        per_update = max((times[1] - times[0]) / updates, 1e-9)
        startup = max(times[0] - updates * per_update, 0.0)
        steps = math.ceil(n_train / cfg["batch_size"]) * cfg["max_epoch"]
        valid = cfg["max_epoch"] * math.ceil(n_valid / cfg["batch_size"]) * per_update / 3
        per_run[run] = dict(per_update_s=per_update, startup_s=startup, full_s=startup + steps * per_update + valid)
        print(f"[estimate] {run}: {per_update:.3f} CPU s/update, startup {startup:.0f} s, "
              f"{steps} updates -> {per_run[run]['full_s'] / 60:.1f} CPU min per seed", flush=True)
    d_runs = [r for r in ("childtuning_d", "rdrop_childtuning_d") if r in per_run]
    if d_runs:
        # the seed's D mask: one pass of the baseline criterion's gradients over the training set
        # (forward and backward, no optimizer step: at most one baseline epoch)
        timed = per_run[d_runs[0]]
        per_step = timed["per_update_s"] / (1.7 if d_runs[0].startswith("rdrop") else 1.0)
        steps = math.ceil(n_train / cfg["batch_size"])
        per_run["mask"] = dict(per_update_s=per_step, startup_s=timed["startup_s"],
                               full_s=timed["startup_s"] + steps * per_step)
        print(f"[estimate] mask (ChildTuning-D): ~{per_run['mask']['full_s'] / 60:.1f} CPU min per seed "
              f"({steps} baseline-sized steps)", flush=True)
    total = sum(r["full_s"] for r in per_run.values()) * len(seeds)
    print(f"[estimate] {dataset} {len(seeds)} seed(s): {total / 60:.1f} CPU minutes; "
          f"~{total / 60 / min(parallel, 2):.1f} min wall on a free 2-core CPU with --parallel {parallel}", flush=True)
    return per_run


def summarize(out, dataset, seeds, runs):
    spec = DATASETS[dataset]
    metrics = (spec["metric"], *spec["extra_metrics"])
    rows, curves = [], {}
    for run in runs:
        per_seed = []
        for seed in seeds:
            stats = read_valid_stats(out / f"{run}-seed{seed}" / "train.log")
            # the epoch whose checkpoint the run kept: fairseq replaces checkpoint_best.pt on a tie too
            best = max(reversed(stats), key=lambda s: s[spec["metric"]])
            per_seed.append(dict(seed=seed, best={m: best.get(m, float("nan")) for m in metrics},
                                 last={m: stats[-1].get(m, float("nan")) for m in metrics},
                                 best_epoch=best["epoch"], valid_loss=stats[-1]["valid_loss"],
                                 train_s=float((out / f"{run}-seed{seed}" / "train_seconds.txt").read_text())))
            curves[f"{run} (seed {seed})"] = stats
        row = dict(run=run, seeds=per_seed)
        for when in ("best", "last"):
            for m in metrics:
                row[f"{when}_{m}"] = mean_std([s[when][m] for s in per_seed])
        rows.append(row)
    return rows, curves, metrics


def format_table(rows, metrics):
    cols = [f"{w} {m.replace('valid_', '')}" for w in ("best", "last") for m in metrics]
    lines = ["| run | " + " | ".join(cols) + " | train time / seed (s) |", "|---" * (len(cols) + 2) + "|"]
    for r in rows:
        cells = [f"{r[f'{w}_{m}'][0]:.2f} ± {r[f'{w}_{m}'][1]:.2f}" for w in ("best", "last") for m in metrics]
        secs = statistics.mean(s["train_s"] for s in r["seeds"])
        lines.append(f"| {r['run']} | " + " | ".join(cells) + f" | {secs:.0f} |")
    return "\n".join(lines)


def paired_gains(rows, metric):
    """Each run against the baseline on the best epoch's ``metric``, paired by seed: run -> paired_gain."""
    base = next((r for r in rows if r["run"] == "baseline"), None)
    if base is None or len(base["seeds"]) < 2:
        return {}
    values = lambda row: [s["best"][metric] for s in row["seeds"]]  # noqa: E731
    return {r["run"]: paired_gain(values(base), values(r)) for r in rows if r["run"] != "baseline"}


def format_gains(gains, metric):
    name = metric.replace("valid_", "")
    return "\n".join(f"{run} - baseline (best {name}) {describe_gain(g, name)}" for run, g in gains.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one run of each kind per seed")
    parser.add_argument("--max-epoch", type=int, help="override the setting's epochs (every run)")
    parser.add_argument("--rdrop-alpha", type=float, help="override the setting's R-Drop alpha")
    parser.add_argument("--lr", type=float, help="override the setting's peak learning rate (every run)")
    parser.add_argument("--batch-size", type=int, help="override the setting's batch size (every run)")
    parser.add_argument("--reserve-p", type=float, help="override the setting's ChildTuning reserve_p (F and D)")
    parser.add_argument("--bert-dir", type=Path, help="encoder settings: the BERT to convert (config.json, "
                        f"vocab.txt, model.safetensors; default for minilm: the PyPI package {convert_bert.PACKAGE})")
    parser.add_argument("--train-lines", type=int, metavar="N", help="override the setting's training-set size: "
                        "the first N training examples (0: all)")
    parser.add_argument("--parallel", type=int, default=2, help="trainings at a time (one thread each when more than one)")
    parser.add_argument("--runs", help="comma-separated runs (default: the dataset's R-Drop comparison, "
                        f"{','.join(RUNS)}[,rdrop_softmax]); ChildTuning: {','.join(CHILDTUNING_RUNS)} "
                        "(pretrained and minilm settings)")
    parser.add_argument("--workdir", type=Path, help="default: <repo>/work/classification-<dataset>-<setting>")
    parser.add_argument("--pretrain-workdir", type=Path, help="pretrained settings: pretrain.py's work folder "
                        "(default: <repo>/work/classification-pretrain-<its setting>)")
    parser.add_argument("--plot", type=Path, help="PNG of the dev curves (default: <workdir>/valid_curves.png)")
    parser.add_argument("--estimate", type=int, metavar="N", help="only time N and 2N updates of each run "
                        "and print the setting's estimated cost (nothing is trained to the end)")
    args = parser.parse_args(argv)
    if args.dataset not in SETTINGS[args.setting]:
        parser.error(f"--dataset {args.dataset}: setting {args.setting} has no such run; settings with it: "
                     f"{[name for name, s in SETTINGS.items() if args.dataset in s]}")
    cfg = apply_overrides(SETTINGS[args.setting][args.dataset], args, parser)
    if args.batch_size is not None:
        if args.batch_size < 1:
            parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
        cfg["batch_size"] = args.batch_size
    if args.reserve_p is not None:
        if not 0 < args.reserve_p <= 1 or "childtuning_reserve_p" not in cfg:
            parser.error(f"--reserve-p must be in (0, 1] with a setting that fine-tunes, got {args.reserve_p} "
                         f"with {args.setting}")
        cfg["childtuning_reserve_p"] = args.reserve_p
    if args.bert_dir is not None:
        if not cfg.get("encoder"):
            parser.error(f"--bert-dir: setting {args.setting} does not fine-tune a converted BERT")
        cfg["bert_dir"] = str(args.bert_dir.resolve())
    elif cfg.get("encoder") == "bert-dir":
        parser.error(f"setting {args.setting} needs --bert-dir (the BERT to convert)")
    if args.lr is not None:
        if not args.lr > 0:
            parser.error(f"--lr must be > 0, got {args.lr}")
        cfg["lr"] = args.lr
    if args.train_lines is not None:
        if args.train_lines < 0:
            parser.error(f"--train-lines must be >= 0, got {args.train_lines}")
        cfg["max_lines"] = {**(cfg["max_lines"] or {}), "train": args.train_lines or None}
    runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else list(runs_for(args.dataset))
    unknown = [r for r in runs if r not in all_runs(args.dataset)]
    if unknown:
        parser.error(f"--runs: unknown {unknown} for {args.dataset}; choose from {all_runs(args.dataset)}")
    if any(r in CHILDTUNING_RUNS for r in runs) and "childtuning_reserve_p" not in cfg:
        parser.error(f"--runs: the ChildTuning runs fine-tune a pre-trained encoder; use --setting pretrained "
                     f"(setting {args.setting} trains from scratch)")
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    workdir = (args.workdir or REPO / "work" / f"classification-{args.dataset}-{args.setting}").resolve()
    check_same_config(workdir, cfg)
    print(f"[classification] dataset={args.dataset} setting={args.setting} seeds={args.seeds} "
          f"workdir={workdir}\n[classification] {json.dumps(cfg)}", flush=True)

    bin_dir = Path(sys.executable).parent
    checkpoint = srcdict = vocab = encoder_dir = None
    if cfg.get("pretrained"):
        checkpoint, srcdict = pretrain((args.pretrain_workdir or pretrain_workdir(cfg["pretrained"])).resolve(),
                                       cfg["pretrained"], bin_dir=bin_dir)
    if cfg.get("encoder"):
        encoder_dir = convert_encoder(workdir, Path(cfg["bert_dir"]) if cfg.get("bert_dir") else None)
        checkpoint, srcdict, vocab = encoder_dir / "model.pt", encoder_dir / "dict.txt", encoder_dir / "vocab.txt"
    data_bin = prepare(workdir, args.dataset, nwords=cfg.get("nwords"), max_lines=cfg["max_lines"], bin_dir=bin_dir,
                       srcdict=srcdict, vocab=vocab)
    n_train = count_lines(workdir / "raw" / "train.input0")
    if args.estimate:
        return estimate(bin_dir, data_bin, workdir, args.dataset, cfg, args.seeds, args.parallel, n_train,
                        count_lines(workdir / "raw" / "valid.input0"), args.estimate, runs, checkpoint, encoder_dir)
    out = workdir / "runs"

    def command(run, seed):
        return train_command(bin_dir, data_bin, out / f"{run}-seed{seed}", args.dataset, cfg, run, seed, n_train,
                             checkpoint, workdir / "masks" / f"seed{seed}" / "mask.pt", encoder_dir)

    # the D masks first: every D run of a seed waits for its mask
    jobs = [(f"mask-seed{seed}", mask_command(command("childtuning_d", seed)), workdir / "masks" / f"seed{seed}")
            for seed in args.seeds if any(CHILDTUNING_RUNS.get(run, ("", ""))[1] == "D" for run in runs)]
    jobs += [(f"{run}-seed{seed}", command(run, seed), out / f"{run}-seed{seed}")
             for seed in args.seeds for run in runs]
    train_all(jobs, args.parallel, Stages(workdir / "stages"))

    rows, curves, metrics = summarize(out, args.dataset, args.seeds, runs)
    table = format_table(rows, metrics)
    plot_path = args.plot or workdir / "valid_curves.png"
    plot_runs(curves, plot_path, title=f"{args.dataset} ({args.setting}, {cfg['max_epoch']} epochs, "
              f"seeds {args.seeds})", metrics=("valid_loss", *metrics))
    gains = paired_gains(rows, metrics[0])
    (workdir / "results.json").write_text(json.dumps(dict(rows=rows, cfg=cfg, seeds=args.seeds, runs=runs,
                                                          paired_gains=gains), indent=1))
    print(f"\n{table}\n\nmean ± std over seeds {args.seeds}; best = the epoch with the best "
          f"{metrics[0].replace('valid_', '')}, last = epoch {cfg['max_epoch']}\nplot: {plot_path}", flush=True)
    if gains:
        print(f"\n{format_gains(gains, metrics[0])}", flush=True)
    return rows


if __name__ == "__main__":
    main()
