"""Multi30k De->En quickstart: baseline transformer vs the same transformer trained with R-Drop.

    RDROP_DATA_DIR=/path/to/data python recipes/translation/multi30k/run.py --setting main

Prepares the data (prepare.py), trains the baseline (label_smoothed_cross_entropy) and R-Drop
(label_smoothed_cross_entropy_with_rdrop from the rdrop_fairseq plugin) with identical settings and
seeds, translates test_2016_flickr with beam search, scores detokenized sacreBLEU, prints a table and
saves a plot of train and validation loss per epoch.  Every stage is resumable: rerun the same command after an
interruption (fairseq resumes training from checkpoint_last.pt).
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
# by package path: other recipes have a prepare.py and a run.py too (one process may load several)
from recipes.translation.multi30k.pipeline import (  # noqa: E402
    RUNS, best_epoch_stats, generate, run_in_threads, stream, train_command, write_average,
)
from recipes.translation.multi30k.prepare import SPLITS, prepare, read_corpus  # noqa: E402
from recipes.translation.multi30k.time_to_quality import (  # noqa: E402
    EARLY_STOP, format_rows as format_speed, time_to_quality, training_seconds)
from recipes.common.bleu import detokenize, sacrebleu_score  # noqa: E402
from recipes.common.data import DataError, Stages  # noqa: E402
from recipes.common.fairseq_bin import fairseq_bin_dir  # noqa: E402
from recipes.common.settings import apply_overrides, check_same_config  # noqa: E402
from recipes.common.plot import plot_train_valid, read_valid_stats  # noqa: E402
from recipes.common.progress import EpochProgress  # noqa: E402
from recipes.common.seeds import describe_gain, mean_std, paired_gain  # noqa: E402

# ---- Hyperparameters -------------------------------------------------------------------------------
# R-Drop pays where the baseline over-fits (the paper: IWSLT14, dropout 0.3, long training). "main",
# the quickstart, gets there on a CPU with little data and a model big enough to over-fit it.
# A 2+2-layer d=128 Transformer (FFN 512, 4 heads): the exploration settings quick and full, whose
# numbers docs/results.md reports.
SMALL_MODEL = dict(
    spm_vocab=4000, layers=2, embed_dim=128, ffn_dim=512, heads=4, dropout=0.3,
    lr=1e-3, warmup=100, max_tokens=1024, max_update=0, beam=5, eval_bleu=False,
)
# A 3+3-layer d=256 Transformer (FFN 1024, 4 heads, 6.5M parameters with a 4k vocabulary).
BASE_MODEL = dict(layers=3, embed_dim=256, ffn_dim=1024, heads=4, dropout=0.3, max_update=0, beam=5)
SETTINGS = {
    # Used by tests/recipes/test_recipe_multi30k.py: a slice of the corpus, a tiny model, a few updates.
    "tiny": dict(
        max_lines={"train": 300, "valid": 100, "test": 50}, spm_vocab=1000,
        layers=1, embed_dim=64, ffn_dim=128, heads=2, dropout=0.3, rdrop_alpha=5.0,
        lr=1e-3, warmup=10, max_tokens=2048, max_epoch=1, max_update=0, beam=2, eval_bleu=False,
    ),
    # The README's main job (quickstart): the first 1,000 training pairs and the 3+3 d=256 model, which
    # over-fits them: the baseline's validation loss is lowest near epoch 18 and rises after, while
    # R-Drop's keeps falling to about epoch 26. 26 epochs chosen on validation BLEU of a 40-epoch
    # --keep-all-epochs run (seed 1; docs/results.md lists every budget tried) and the 30-minute budget.
    "main": dict(
        BASE_MODEL, max_lines={"train": 1000}, spm_vocab=4000, rdrop_alpha=3.0,
        lr=1e-3, warmup=100, max_tokens=1024, max_epoch=26, eval_bleu=False,
    ),
    # The same model on the first 2,000 pairs for 20 epochs (3 seeds in docs/results.md): the
    # baseline has barely stopped improving and R-Drop gains no BLEU there.
    "main2k": dict(
        BASE_MODEL, max_lines={"train": 2000}, spm_vocab=4000, rdrop_alpha=3.0,
        lr=1e-3, warmup=100, max_tokens=1024, max_epoch=20, eval_bleu=False,
    ),
    # 4,000 pairs, 30 epochs of the small model: a tie on BLEU with lower validation loss at alpha 1,
    # -3.87 BLEU at --rdrop-alpha 5 (docs/results.md).
    "quick": dict(SMALL_MODEL, max_lines={"train": 4000}, rdrop_alpha=1.0, max_epoch=30),
    # 8,000 pairs, 40 epochs of the small model (+0.41 BLEU; +0.66 with --max-epoch 60). Its short runs
    # in docs/results.md (--max-epoch 3 / 12 --rdrop-alpha 5) are this setting with the overrides.
    "full": dict(SMALL_MODEL, max_lines={"train": 8000}, rdrop_alpha=1.0, max_epoch=40),
    # All 29,000 pairs on the corpus's lowercased tokenised text, joint sentencepiece BPE 8k, scored
    # with sacreBLEU -tok none against the tokenised reference: the protocol of the plain-fairseq
    # reference run (37.1 BLEU after 15 epochs). Each run trains until its validation loss has not
    # improved for `patience` epochs (max_epoch is only a cap), one run at a time on all cores, with
    # greedy validation BLEU after each epoch; the best checkpoint and the average of the last 5
    # translate test, and the best one valid too. Hours on a 2-core CPU.
    "full29k": dict(
        BASE_MODEL, max_lines=None, text="tok", spm_vocab=8000, spm_type="bpe", rdrop_alpha=5.0,
        lr=1e-3, warmup=1000, max_tokens=4096, max_epoch=200, patience=5, average_last=5,
        eval_bleu=True, score_valid=True, sequential=True,
    ),
}
# The same data and protocol for one CUDA GPU (--device cuda, --fp16): transformer_iwslt_de_en's
# size (6+6 layers, d=512, FFN 1024, 4 heads), the paper's IWSLT14 alpha 5. A few minutes an epoch.
SETTINGS["full29k-gpu"] = dict(
    SETTINGS["full29k"], layers=6, embed_dim=512, ffn_dim=1024, heads=4, lr=5e-4, warmup=4000, max_epoch=60,
)
# full29k-gpu's protocol (tokenised text, BPE, greedy valid BLEU each epoch, patience, the average of
# the last checkpoints, valid scored too) on 300 training pairs with tiny's model, two minutes on the
# CPU: what benchmarks/gpu_dry_run.sh runs in place of full29k-gpu to check a GPU machine's path.
# Few valid and test sentences: an untrained model's greedy validation translations run to 200 tokens.
SETTINGS["full29k-tiny"] = dict(
    SETTINGS["full29k-gpu"], max_lines={"train": 300, "valid": 30, "test": 20}, spm_vocab=1000, layers=1,
    embed_dim=64, ffn_dim=128, heads=2, lr=1e-3, warmup=10, max_tokens=2048, max_epoch=2, average_last=2,
)
DEFAULT_SEED = 1
# ------------------------------------------------------------------------------------------------------


def train_and_translate(bin_dir, data_bin, run_dir, cfg, run, seed, stages, n_test, average, device, threads,
                        n_valid):
    """One run's stages: train, translate test with the best checkpoint (and the average), and valid
    with the best checkpoint where the setting asks (``n_valid``)."""
    tag = f"{run}-seed{seed}"
    if stages.is_done(f"train-{tag}"):
        print(f"[stage] train-{tag}: already done, skipped", flush=True)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = train_command(bin_dir, data_bin, run_dir, cfg, run, seed, device)
        print(f"[stage] train-{tag}: fairseq-train, its whole log in {run_dir / 'train.log'}", flush=True)
        progress = EpochProgress(cfg["max_epoch"], cfg.get("patience", 0))
        code = stream(cmd, run_dir / "train.log", f"{run} s{seed}", threads, progress)
        if code != 0:
            raise SystemExit(f"fairseq-train for {tag} failed (exit {code}); see {run_dir / 'train.log'}")
        stages.marker(f"train-{tag}").write_text("done\n")
        print(f"[stage] train-{tag}: done", flush=True)
    stages.run(f"generate-{tag}", generate, bin_dir, data_bin, run_dir / "checkpoint_best.pt",
               run_dir / "test.hyp", cfg["beam"], n_test, device=device, threads=threads)
    if n_valid:
        stages.run(f"generate-valid-{tag}", generate, bin_dir, data_bin, run_dir / "checkpoint_best.pt",
                   run_dir / "valid.hyp", cfg["beam"], n_valid, subset="valid", device=device, threads=threads)
    if average:
        stages.run(f"average{average}-{tag}", write_average, run_dir, average)
        stages.run(f"generate-avg{average}-{tag}", generate, bin_dir, data_bin,
                   run_dir / f"checkpoint_avg{average}.pt", run_dir / f"test.avg{average}.hyp", cfg["beam"], n_test,
                   device=device, threads=threads)


def score(hyp_file, refs, tokenize):
    hyps = Path(hyp_file).read_text(encoding="utf-8").splitlines()
    if len(hyps) != len(refs):
        raise SystemExit(f"{hyp_file} has {len(hyps)} lines, expected {len(refs)}")
    return sacrebleu_score(hyps, refs, tokenize=tokenize)


def detok_scores(hyp_file, cased_refs):
    """Tokenised lowercased hypotheses against the corpus's raw cased references: Moses-detokenised,
    sacreBLEU 13a, case-insensitive (``lc``) and cased (the model emits no capitals: a lower bound)."""
    hyps = detokenize(Path(hyp_file).read_text(encoding="utf-8").splitlines(), "en")
    return dict(detok_lc=sacrebleu_score(hyps, cased_refs, lowercase=True)[0],
                detok_cased=sacrebleu_score(hyps, cased_refs)[0])


def require_detokenizer(setting):
    """A setting on tokenised text also scores its translations detokenised, with sacremoses: say so
    before hours of training rather than at the table."""
    try:
        import sacremoses  # noqa: F401
    except ImportError:
        sys.exit(f"error: --setting {setting} scores its test translations detokenised with sacremoses, "
                 "which this Python cannot import: pip install sacremoses (or the plugin's recipes extra, "
                 "pip install -e .[recipes])")


def stop_reason(log_path):
    """What ended the training: fairseq's --patience, or the epoch cap."""
    text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    return "patience" if EARLY_STOP in text else "max epoch"


def seed_rows(seed_dir, refs, tokenize, average, valid_refs=None, cased_refs=None):
    """One row per run (and per averaged run): BLEU, best validation loss and where it fell, and
    what ended the training; the best checkpoint's valid BLEU where ``valid_refs`` are given; the
    detokenised scores against ``cased_refs`` where given (a setting on tokenised lowercased text)."""
    rows, signature = [], ""
    for run in RUNS:
        run_dir = seed_dir / run
        stats = read_valid_stats(run_dir / "train.log")
        best = best_epoch_stats(stats)  # the epoch of checkpoint_best.pt, which translated test
        common = dict(best_valid_loss=best["valid_loss"], nll=best["valid_nll_loss"], ppl=best["valid_ppl"],
                      best_epoch=best["epoch"], epochs=stats[-1]["epoch"], stopped_by=stop_reason(run_dir / "train.log"),
                      train_s=training_seconds(run_dir / "train.log"))
        if valid_refs is not None:
            common["valid_bleu"] = score(run_dir / "valid.hyp", valid_refs, tokenize)[0]
        for name, hyp_file in [(run, run_dir / "test.hyp")] + (
                [(f"{run} (avg last {average})", run_dir / f"test.avg{average}.hyp")] if average else []):
            bleu, signature = score(hyp_file, refs, tokenize)
            row = dict(run=name, bleu=bleu, **common)
            if cased_refs is not None:
                row.update(detok_scores(hyp_file, cased_refs))
            rows.append(row)
    return rows, signature


# optional columns: (row key, heading, format), shown when the rows have them
EXTRA_COLUMNS = (("detok_lc", "test BLEU detok. lc", "{:.2f}"), ("detok_cased", "detok. cased", "{:.2f}"),
                 ("valid_bleu", "valid BLEU", "{:.2f}"))


def format_table(rows):
    extra = [c for c in EXTRA_COLUMNS if c[0] in rows[0]]
    head = ["run", "test BLEU", *(c[1] for c in extra), "best valid loss", "valid nll", "valid ppl",
            "best epoch / epochs", "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        epochs = f"{r['best_epoch']} / {r['epochs']}" + (" (patience)" if r.get("stopped_by") == "patience" else "")
        cells = [r["run"], f"{r['bleu']:.2f}", *(fmt.format(r[key]) for key, _, fmt in extra),
                 f"{r['best_valid_loss']:.3f}", f"{r['nll']:.3f}", f"{r['ppl']:.2f}", epochs, f"{r['train_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_summary(per_seed):
    """Mean +- std over seeds per run, and the paired gain; ``per_seed``: seed -> rows."""
    names = [row["run"] for row in next(iter(per_seed.values()))]
    lines = ["| run | seeds | test BLEU | best valid loss |", "|---|---|---|---|"]
    for name in names:
        rows = [next(r for r in rows if r["run"] == name) for rows in per_seed.values()]
        bleu, loss = mean_std([r["bleu"] for r in rows]), mean_std([r["best_valid_loss"] for r in rows])
        lines.append(f"| {name} | {len(rows)} | {bleu[0]:.2f} ± {bleu[1]:.2f} | {loss[0]:.3f} ± {loss[1]:.3f} |")
    base, rdrop = ([next(r for r in rs if r["run"] == n)["bleu"] for rs in per_seed.values()] for n in RUNS)
    gain = paired_gain(base, rdrop)
    lines.append("")
    lines.append(f"R-Drop - baseline {describe_gain(gain, 'BLEU')}")
    return "\n".join(lines), gain["gains"]


def parse_seeds(text, parser):
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, e.g. 1,2,3; got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds needs distinct integers, got {text!r}")
    return seeds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="main", help="size of the experiment")
    parser.add_argument("--workdir", type=Path, help="output folder (default: <repo>/work/multi30k-<setting>)")
    parser.add_argument("--plot", type=Path, help="where to save the PNG (default: <workdir>/loss_curves.png)")
    parser.add_argument("--seeds", default=str(DEFAULT_SEED),
                        help="comma-separated seeds, e.g. 1,2,3: one baseline/R-Drop pair per seed, then "
                             "mean ± std (default: %(default)s)")
    parser.add_argument("--max-epoch", type=int, help="override the setting's number of epochs (both runs)")
    parser.add_argument("--rdrop-alpha", type=float, help="override the setting's R-Drop alpha")
    parser.add_argument("--average-last", type=int, metavar="N",
                        help="also translate with the average of the last N epoch checkpoints (the paper's "
                             "WMT protocol); keeps those checkpoints")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (fp32, one thread per run) or cuda (--fp16; both runs share the GPU "
                             "unless --sequential)")
    parser.add_argument("--sequential", action="store_true",
                        help="train baseline and R-Drop one after the other instead of side by side")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per fairseq process (default: all cores for one run at a time, 1 for "
                             "runs side by side); 1 on a core of its own (taskset -c) keeps a long run's speed "
                             "steady beside other work")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help="comma-separated runs to train and translate in this call, in that order "
                             "(default: %(default)s); the report needs both, so a call with one run "
                             "stops after it and a later call with both finishes")
    parser.add_argument("--keep-all-epochs", action="store_true",
                        help="keep every epoch's checkpoint (to study the epoch count on validation)")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds, parser)
    runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    if not runs or len(set(runs)) != len(runs) or not set(runs) <= set(RUNS):
        parser.error(f"--runs takes distinct names from {','.join(RUNS)}; got {args.runs!r}")
    report = len(runs) == len(RUNS)  # the tables and plot compare both runs
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    cfg = apply_overrides(SETTINGS[args.setting], args, parser)
    if args.average_last is not None:
        if args.average_last < 2:
            parser.error(f"--average-last must be >= 2, got {args.average_last}")
        if args.average_last > cfg["max_epoch"]:
            parser.error(f"--average-last {args.average_last} exceeds the {cfg['max_epoch']} epochs")
        cfg["average_last"] = args.average_last
    average = cfg.get("average_last")
    if average:
        cfg["keep_epochs"] = average
    if args.keep_all_epochs:
        cfg["keep_epochs"] = "all"
    suffix = "" if args.max_epoch is None else f"-e{args.max_epoch}"
    suffix += "" if args.rdrop_alpha is None else f"-a{args.rdrop_alpha:g}"
    workdir = (args.workdir or REPO / "work" / f"multi30k-{args.setting}{suffix}").resolve()
    check_same_config(workdir, cfg)
    bin_dir = fairseq_bin_dir()
    print(f"[multi30k] setting={args.setting} seeds={seeds} workdir={workdir}\n[multi30k] {json.dumps(cfg)}",
          flush=True)

    text = cfg.get("text", "raw")
    if text == "tok":
        require_detokenizer(args.setting)
    try:
        data_bin = prepare(workdir, cfg["spm_vocab"], model_type=cfg.get("spm_type", "unigram"),
                           max_lines=cfg["max_lines"], bin_dir=bin_dir, text=text)
    except DataError as error:  # a corpus file missing, wrong or not downloadable: say which, no traceback
        sys.exit(f"error: {error}")
    # Cased detokenised text is scored with sacreBLEU's 13a tokenizer; the corpus's own tokenised
    # lowercased text (full29k) with -tok none, as the reference protocol does.
    tokenize = "none" if text == "tok" else "13a"
    refs = (workdir / "raw" / "test.en").read_text(encoding="utf-8").splitlines()
    valid_refs = (workdir / "raw" / "valid.en").read_text(encoding="utf-8").splitlines()
    n_valid = len(valid_refs) if cfg.get("score_valid") else 0
    # the tokenised lowercased text is also scored detokenised against the raw cased references
    cased_refs = read_corpus(SPLITS["test"], "en", "raw")[:len(refs)] if text == "tok" else None
    sequential = args.sequential or cfg.get("sequential", False)
    # one run at a time gets every core; side by side, one thread each
    threads = args.threads or ((os.cpu_count() or 1) if sequential else 1)
    stages = Stages(workdir / "stages")
    per_seed, signature = {}, ""
    for seed in seeds:
        seed_dir = workdir / "runs" / f"seed{seed}"
        # Each run translates as soon as it has trained, while the other one still trains.
        jobs = [
            (lambda run=run: train_and_translate(bin_dir, data_bin, seed_dir / run, cfg, run, seed, stages,
                                                 len(refs), average, args.device, threads, n_valid))
            for run in runs
        ]
        for group in ([[job] for job in jobs] if sequential else [jobs]):
            run_in_threads(group)
        if not report:
            continue
        per_seed[seed], signature = seed_rows(seed_dir, refs, tokenize, average, valid_refs if n_valid else None,
                                              cased_refs)
        print(f"\n[seed {seed}]\n{format_table(per_seed[seed])}", flush=True)

    if not report:
        print(f"[multi30k] trained {','.join(runs)} only; run again without --runs for the report", flush=True)
        return None
    first = workdir / "runs" / f"seed{seeds[0]}"
    plot_path = args.plot or workdir / "loss_curves.png"
    plot_train_valid({run: first / run / "train.log" for run in RUNS}, plot_path,
                     title=f"Multi30k De-En ({args.setting}, seed {seeds[0]}): train (dashed) and valid loss")
    summary, gains = seeds_summary(per_seed) if len(seeds) > 1 else ("", None)
    # how soon R-Drop reaches the baseline's best, where the runs trained one at a time
    speed = time_to_quality(*(first / run / "train.log" for run in RUNS)) if sequential else None
    (workdir / "results.json").write_text(json.dumps(
        dict(per_seed=per_seed, signature=signature, cfg=cfg, gains=gains, time_to_quality=speed), indent=1))
    print(f"\nsacreBLEU signature: {signature}\nplot: {plot_path}", flush=True)
    if speed:
        print(f"\ntime to quality (seed {seeds[0]}):\n{format_speed(speed)}", flush=True)
    if summary:
        print(f"\n{summary}", flush=True)
    rows = per_seed[seeds[0]]
    gain = rows[len(rows) // 2]["bleu"] - rows[0]["bleu"]
    if not math.isfinite(gain):
        raise SystemExit("BLEU is not a finite number")
    print(f"R-Drop - baseline (seed {seeds[0]}, best checkpoints): {gain:+.2f} BLEU", flush=True)
    return per_seed


if __name__ == "__main__":
    main()
