"""Multi30k De->En quickstart: baseline transformer vs the same transformer trained with R-Drop.

    RDROP_DATA_DIR=/path/to/data python recipes/translation/multi30k/run.py --setting quick

Prepares the data (prepare.py), trains the baseline (label_smoothed_cross_entropy) and R-Drop
(label_smoothed_cross_entropy_with_rdrop from the rdrop_fairseq plugin) with identical settings and
seeds, translates test_2016_flickr with beam search, scores detokenized sacreBLEU, prints a table and
saves a plot of validation loss per epoch.  Every stage is resumable: rerun the same command after an
interruption (fairseq resumes training from checkpoint_last.pt).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare import prepare  # noqa: E402
from recipes.common.bleu import sacrebleu_score  # noqa: E402
from recipes.common.data import DataError, Stages  # noqa: E402
from recipes.common.plot import plot_runs, read_valid_stats  # noqa: E402

# ---- Hyperparameters -------------------------------------------------------------------------------
# Small data + high dropout: the baseline overfits after a few epochs, which is where R-Drop's
# consistency term helps (the paper uses alpha=5 with dropout 0.3 on IWSLT14 De-En).
# The model and optimisation shared by quick, quick8k and full; they differ in data, alpha and epochs.
SMALL_MODEL = dict(
    spm_vocab=4000, layers=2, embed_dim=128, ffn_dim=512, heads=4, dropout=0.3,
    lr=1e-3, warmup=100, max_tokens=1024, max_update=0, beam=5, eval_bleu=False, parallel=True,
)
SETTINGS = {
    # Used by tests/test_recipe_multi30k.py: a slice of the corpus, a tiny model, a few updates.
    "tiny": dict(
        max_lines={"train": 2000, "valid": 100, "test": 50}, spm_vocab=1000,
        layers=1, embed_dim=64, ffn_dim=128, heads=2, dropout=0.3, rdrop_alpha=5.0,
        lr=1e-3, warmup=10, max_tokens=2048, max_epoch=1, max_update=6, beam=2, eval_bleu=False,
        parallel=True,
    ),
    # About 17 minutes for both runs on a free 2-core CPU, side by side with 1 thread each:
    # the first 4,000 training pairs and 30 epochs of a small model. alpha 1, not the paper's 5:
    # at this budget alpha 5 converged too slowly (-3.87 BLEU), alpha 1 gave lower validation
    # loss from epoch 4 on and equal BLEU (docs/results.md).
    "quick": dict(SMALL_MODEL, max_lines={"train": 4000}, rdrop_alpha=1.0, max_epoch=30),
    # The first quick setting (8,000 pairs, 3 epochs; ~5 minutes on a free CPU), kept because
    # docs/results.md reports it.
    "quick8k": dict(SMALL_MODEL, max_lines={"train": 8000}, rdrop_alpha=5.0, max_epoch=3),
    # The fuller CPU setting (about 45 minutes for both runs on a free 2-core CPU): twice the data
    # of quick and 40 epochs of the same model, so the baseline approaches saturation, where
    # R-Drop's consistency term helps; alpha 1 for the reason given at quick.
    "full": dict(SMALL_MODEL, max_lines={"train": 8000}, rdrop_alpha=1.0, max_epoch=40),
    # The main job's candidate: 2,000 pairs and a 3+3-layer d=256 model that over-fits them.
    "main": dict(
        max_lines={"train": 2000}, spm_vocab=4000, layers=3, embed_dim=256, ffn_dim=1024, heads=4,
        dropout=0.3, rdrop_alpha=3.0, lr=1e-3, warmup=100, max_tokens=1024, max_epoch=30,
        max_update=0, beam=5, eval_bleu=False, parallel=True,
    ),
    # All 29,000 pairs, a 3+3-layer d=256 model and 40 epochs with greedy valid BLEU per epoch:
    # about 10 hours on 2 CPU cores (not run here); sized for a GPU or a long CPU run.
    "base29k": dict(
        max_lines=None, spm_vocab=8000,
        layers=3, embed_dim=256, ffn_dim=1024, heads=4, dropout=0.3, rdrop_alpha=5.0,
        lr=1e-3, warmup=1000, max_tokens=4096, max_epoch=40, max_update=0, beam=5, eval_bleu=True,
        parallel=True,
    ),
}
SEED = 1
LABEL_SMOOTHING = 0.1
RUNS = ("baseline", "rdrop")
# ------------------------------------------------------------------------------------------------------


def user_dir():
    return REPO / "rdrop_fairseq"


def train_command(bin_dir, data_bin, save_dir, cfg, run):
    cmd = [
        str(bin_dir / "fairseq-train"), str(data_bin), "--user-dir", str(user_dir()),
        "--task", "translation", "--source-lang", "de", "--target-lang", "en",
        "--arch", "transformer", "--share-all-embeddings",
        "--encoder-layers", str(cfg["layers"]), "--decoder-layers", str(cfg["layers"]),
        "--encoder-embed-dim", str(cfg["embed_dim"]), "--decoder-embed-dim", str(cfg["embed_dim"]),
        "--encoder-ffn-embed-dim", str(cfg["ffn_dim"]), "--decoder-ffn-embed-dim", str(cfg["ffn_dim"]),
        "--encoder-attention-heads", str(cfg["heads"]), "--decoder-attention-heads", str(cfg["heads"]),
        "--dropout", str(cfg["dropout"]), "--attention-dropout", "0.1", "--activation-dropout", "0.1",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.0001",
        "--lr", str(cfg["lr"]), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(cfg["warmup"]),
        "--max-tokens", str(cfg["max_tokens"]), "--max-epoch", str(cfg["max_epoch"]),
        "--max-update", str(cfg["max_update"]), "--seed", str(cfg.get("seed", SEED)),
        "--label-smoothing", str(LABEL_SMOOTHING),
        "--save-dir", str(save_dir), *([] if cfg.get("save_epochs") else ["--no-epoch-checkpoints"]),
        "--log-format", "json", "--log-interval", "20", "--cpu", "--num-workers", "0",
        # fairseq-fixed 0.12.3.1's batch_by_size drops a last batch smaller than this multiple
        # (default 8): up to 7 valid sentences would silently go missing.
        "--required-batch-size-multiple", "1",
    ]
    if run == "rdrop":
        cmd += ["--criterion", "label_smoothed_cross_entropy_with_rdrop", "--rdrop-alpha", str(cfg["rdrop_alpha"])]
    else:
        cmd += ["--criterion", "label_smoothed_cross_entropy"]
    if cfg["eval_bleu"]:
        cmd += [
            "--eval-bleu", "--eval-bleu-args", '{"beam": 1}', "--eval-bleu-detok", "space",
            "--eval-bleu-remove-bpe", "sentencepiece",
        ]
    return cmd


def stream(cmd, log_path, prefix):
    """Start ``cmd`` with its output shown on the console (prefixed) and kept in ``log_path``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log = open(log_path, "w", encoding="utf-8", buffering=1)  # line-buffered: tail -f works
    log.write(" ".join(cmd) + "\n")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def pump():
        for line in proc.stdout:
            log.write(line)
            print(f"[{prefix}] {line}", end="", flush=True)
        log.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return proc, thread


def train_all(bin_dir, data_bin, out, cfg, stages):
    """Train the runs not yet done; side by side when ``cfg['parallel']`` (each on one thread)."""
    todo = [run for run in RUNS if not stages.is_done(f"train-{run}")]
    for run in RUNS:
        if run not in todo:
            print(f"[stage] train-{run}: already done, skipped", flush=True)
    groups = [todo] if cfg["parallel"] else [[run] for run in todo]
    for group in groups:
        started = {}
        for run in group:
            save_dir = out / run
            save_dir.mkdir(parents=True, exist_ok=True)
            cmd = train_command(bin_dir, data_bin, save_dir, cfg, run)
            print(f"[stage] train-{run}: " + " ".join(cmd), flush=True)
            started[run] = (time.time(), *stream(cmd, save_dir / "train.log", run))
        for run, (start, proc, thread) in started.items():
            code = proc.wait()
            thread.join()
            if code != 0:
                raise SystemExit(f"fairseq-train for {run} failed (exit {code}); see {out / run / 'train.log'}")
            (out / run / "train_seconds.txt").write_text(f"{time.time() - start:.1f}\n")
            stages.marker(f"train-{run}").write_text("done\n")
            print(f"[stage] train-{run}: done", flush=True)


def generate(bin_dir, data_bin, save_dir, beam, expected):
    """Translate the test split with the best checkpoint; write detokenized hypotheses in corpus order."""
    cmd = [
        str(bin_dir / "fairseq-generate"), str(data_bin), "--user-dir", str(user_dir()),
        "--task", "translation", "--source-lang", "de", "--target-lang", "en",
        "--path", str(save_dir / "checkpoint_best.pt"), "--gen-subset", "test",
        "--beam", str(beam), "--batch-size", "128", "--remove-bpe", "sentencepiece", "--cpu",
        "--max-len-a", "1.2", "--max-len-b", "10",  # caps an untrained model's babble (tiny setting)
        "--required-batch-size-multiple", "1",  # else the last few test sentences are dropped (see above)
    ]
    print("[generate] " + " ".join(cmd), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    (save_dir / "generate.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    hyps = {}
    for line in result.stdout.splitlines():
        if line.startswith("D-"):
            tag, _score, text = (line.split("\t") + ["", ""])[:3]
            hyps[int(tag[2:])] = text
    if sorted(hyps) != list(range(expected)):
        raise SystemExit(f"fairseq-generate translated {len(hyps)} of {expected} test sentences; see {save_dir}/generate.log")
    ordered = [hyps[i] for i in range(expected)]
    (save_dir / "test.hyp").write_text("\n".join(ordered) + "\n", encoding="utf-8")
    print(f"[generate] {len(ordered)} hypotheses -> {save_dir / 'test.hyp'}", flush=True)


def summarize(out, workdir):
    refs = (workdir / "raw" / "test.en").read_text(encoding="utf-8").splitlines()
    rows, curves, signature = [], {}, ""
    for run in RUNS:
        hyps = (out / run / "test.hyp").read_text(encoding="utf-8").splitlines()
        if len(hyps) != len(refs):
            raise SystemExit(f"{out / run / 'test.hyp'} has {len(hyps)} lines, expected {len(refs)}")
        bleu, signature = sacrebleu_score(hyps, refs)  # detokenized, 13a
        stats = read_valid_stats(out / run / "train.log")
        best = min(stats, key=lambda s: s["valid_loss"])
        rows.append(dict(
            run=run, bleu=bleu, best_valid_loss=best["valid_loss"], nll=best["valid_nll_loss"],
            ppl=best["valid_ppl"], best_epoch=best["epoch"], epochs=stats[-1]["epoch"],
            train_s=float((out / run / "train_seconds.txt").read_text()),
        ))
        curves[run] = stats
    return rows, curves, signature


def format_table(rows):
    head = "| run | test BLEU | best valid loss | valid nll | valid ppl | best epoch / epochs | train time (s) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['bleu']:.2f} | {r['best_valid_loss']:.3f} | {r['nll']:.3f} | {r['ppl']:.2f} "
            f"| {r['best_epoch']} / {r['epochs']} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def check_same_config(workdir, cfg):
    """Refuse to resume a work folder made with other settings (its finished stages would be reused)."""
    saved = workdir / "config.json"
    if saved.exists():
        old = json.loads(saved.read_text())
        if old != json.loads(json.dumps(cfg)):
            raise SystemExit(
                f"{workdir} was prepared with other settings ({saved}: {old}); "
                f"pass another --workdir or delete that folder"
            )
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(cfg))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="quick", help="size of the experiment")
    parser.add_argument("--workdir", type=Path, help="output folder (default: <repo>/work/multi30k-<setting>)")
    parser.add_argument("--plot", type=Path, help="where to save the PNG (default: <workdir>/valid_curves.png)")
    parser.add_argument("--max-epoch", type=int, help="override the setting's number of epochs (both runs)")
    parser.add_argument("--rdrop-alpha", type=float, help="override the setting's R-Drop alpha")
    parser.add_argument("--seed", type=int, help="override the seed (both runs)")
    parser.add_argument("--save-epochs", action="store_true", help="keep every epoch's checkpoint")
    args = parser.parse_args(argv)
    cfg = dict(SETTINGS[args.setting])
    if args.max_epoch is not None:
        if args.max_epoch < 1:
            parser.error(f"--max-epoch must be >= 1, got {args.max_epoch}")
        cfg["max_epoch"] = args.max_epoch
    if args.rdrop_alpha is not None:
        if not args.rdrop_alpha > 0:
            parser.error(f"--rdrop-alpha must be > 0, got {args.rdrop_alpha}")
        cfg["rdrop_alpha"] = args.rdrop_alpha
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.save_epochs:
        cfg["save_epochs"] = True
    suffix = "" if args.max_epoch is None else f"-e{args.max_epoch}"
    suffix += "" if args.rdrop_alpha is None else f"-a{args.rdrop_alpha:g}"
    workdir = (args.workdir or REPO / "work" / f"multi30k-{args.setting}{suffix}").resolve()
    check_same_config(workdir, cfg)
    bin_dir = Path(sys.executable).parent
    print(f"[multi30k] setting={args.setting} workdir={workdir}\n[multi30k] {json.dumps(cfg)}", flush=True)

    try:
        data_bin = prepare(workdir, cfg["spm_vocab"], max_lines=cfg["max_lines"], bin_dir=bin_dir)
    except DataError as error:  # a corpus file missing, wrong or not downloadable: say which, no traceback
        sys.exit(f"error: {error}")
    out = workdir / "runs"
    stages = Stages(workdir / "stages")
    train_all(bin_dir, data_bin, out, cfg, stages)
    n_test = len((workdir / "raw" / "test.en").read_text(encoding="utf-8").splitlines())
    for run in RUNS:
        stages.run(f"generate-{run}", generate, bin_dir, data_bin, out / run, cfg["beam"], n_test)

    rows, curves, signature = summarize(out, workdir)
    table = format_table(rows)
    plot_path = args.plot or workdir / "valid_curves.png"
    title = f"Multi30k De-En ({args.setting}, {cfg['max_epoch']} epochs): baseline vs R-Drop"
    plot_runs(curves, plot_path, title=title)
    (workdir / "results.json").write_text(json.dumps(dict(rows=rows, signature=signature, cfg=cfg), indent=1))
    print(f"\n{table}\n\nsacreBLEU signature: {signature}\nplot: {plot_path}", flush=True)
    gain = rows[1]["bleu"] - rows[0]["bleu"]
    if not math.isfinite(gain):
        raise SystemExit("BLEU is not a finite number")
    print(f"R-Drop - baseline: {gain:+.2f} BLEU", flush=True)
    return rows


if __name__ == "__main__":
    main()
