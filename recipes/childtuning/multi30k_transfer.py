"""ChildTuning on a sequence task: a small Multi30k De->En transformer pre-trained on one slice of
the training set, then fine-tuned on another, disjoint slice five ways (recipes/childtuning/run.py).

    python recipes/childtuning/multi30k_transfer.py --setting cpu --seeds 1 2

Stages (resumable: a marker in WORKDIR/stages per finished stage; fairseq resumes an interrupted
pre-training from its checkpoint_last.pt, run.py skips finished runs):
  extract   raw/{pre,ft}.{de,en}: the two slices of train; raw/train.*: both (what the vocabulary
            sees); raw/valid.*: Multi30k val; raw/test.*: test_2016_flickr
  spm       spm.model: ONE joint de+en sentencepiece model on pre + ft
  encode    spm/{train,pre,ft,valid,test}.{de,en}
  dict      dict/dict.de.txt: ONE joined fairseq dictionary on pre + ft, so that the pre-trained
            model's embeddings fit the fine-tuning data
  pre-bin, ft-bin   each slice binarized with that dictionary (same valid and test sets)
  pretrain  pretrain/checkpoint_last.pt: the multi30k recipe's transformer (pipeline.train_command,
            label smoothing 0.1, seed 1) trained on pre-bin
then run.py fine-tunes checkpoint_last.pt on ft-bin (baseline, ChildTuning-F, ChildTuning-D, R-Drop,
R-Drop + ChildTuning-D; one D mask per seed), two jobs at a time, and prints each config's best
validation loss (label-smoothed, over epochs) as mean +- std over the seeds; WORKDIR/sweep/results.json.
The seeds vary the fine-tuning only (dropout, batch order, F masks): every run starts from the one
pre-trained model, whose own validation loss is printed last for reference. No BLEU.
"""
import argparse
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.childtuning import run as sweep  # noqa: E402
from recipes.common.data import DataError, Stages, atomic_path, binarize_joined  # noqa: E402
from recipes.common.fairseq_flags import KEEP_LAST_BATCH  # noqa: E402
from recipes.common.plot import read_valid_stats  # noqa: E402
from recipes.common.progress import EpochProgress  # noqa: E402
from recipes.common.settings import check_same_config  # noqa: E402
from recipes.translation.multi30k.pipeline import (  # noqa: E402
    LABEL_SMOOTHING, stream, train_command, transformer_flags,
)
from recipes.translation.multi30k.prepare import LANGS, encode, read_corpus, train_spm  # noqa: E402
from recipes.translation.multi30k.run import SMALL_MODEL  # noqa: E402

# ---- Settings ----------------------------------------------------------------------------------------
# Slices are 1-based inclusive line ranges of Multi30k's train (29,000 pairs); valid_lines / test_lines
# keep the first lines of val / test_2016_flickr (None: all). The model and its optimisation are the
# multi30k recipe's (pipeline.transformer_flags); pre_epochs / ft_epochs the length of each phase.
SETTINGS = {
    # tests/recipes/test_childtuning_transfer.py: a 1-layer d=32 model, a few updates per phase.
    "tiny": dict(
        pre_lines=(1, 300), ft_lines=(301, 400), valid_lines=60, test_lines=20, spm_vocab=1000,
        layers=1, embed_dim=32, ffn_dim=64, heads=2, dropout=0.3, lr=1e-3, warmup=10, max_tokens=1024,
        max_update=0, eval_bleu=False, pre_epochs=1, ft_epochs=2, rdrop_alpha=1.0, reserve_p=0.3,
    ),
    # The multi30k recipe's small model (2+2 layers, d=128) pre-trained on 8,000 pairs, fine-tuned on
    # 1,000 pairs 12,000 lines further on (a slice it never saw), validated on all 1,014 val pairs.
    # Time with 2 seeds on 2 free cores, estimated from CPU seconds measured with one thread per job
    # (short runs of this model on this data, not a full run): 155 updates per pre-training epoch and
    # 24 per fine-tuning epoch; 0.44 s per update (R-Drop 0.74, ChildTuning as plain adam), 3.7 s per
    # validation, 12 s to start each fairseq process. Pre-training runs alone on one core: ~73 s per
    # epoch; the sweep (10 runs, 2 at a time) ~86 s per fine-tuning epoch plus ~80 s of start-ups and
    # D masks; data ~30 s. So ~30 + 73 * pre_epochs + 80 + 86 * ft_epochs s: ~29 min for 8 and 12
    # epochs (10 and 15 would be ~36 min). Expect +-20%: two jobs side by side share memory bandwidth.
    "cpu": dict(
        SMALL_MODEL, pre_lines=(1, 8000), ft_lines=(20001, 21000), valid_lines=None, test_lines=None,
        pre_epochs=8, ft_epochs=12, rdrop_alpha=1.0, reserve_p=0.3,
    ),
}
PRETRAIN_SEED = 1
# ------------------------------------------------------------------------------------------------------


def extract(workdir, cfg):
    with atomic_path(workdir / "raw") as out:
        out.mkdir(parents=True)
        for lang in LANGS:
            train = read_corpus("train", lang, "raw")
            pre, ft = (train[first - 1:last] for first, last in (cfg["pre_lines"], cfg["ft_lines"]))
            texts = dict(pre=pre, ft=ft, train=pre + ft,
                         valid=read_corpus("val", lang, "raw")[:cfg["valid_lines"]],
                         test=read_corpus("test_2016_flickr", lang, "raw")[:cfg["test_lines"]])
            for name, lines in texts.items():
                (out / f"{name}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_dict(workdir, bin_dir):
    """The joined dictionary of spm/train (both slices) alone: fairseq-preprocess --dict-only."""
    with atomic_path(workdir / "dict") as out:
        subprocess.run([str(bin_dir / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
                        "--trainpref", str(workdir / "spm" / "train"), "--joined-dictionary", "--dict-only",
                        "--destdir", str(out), "--workers", "1"], check=True)


def pretrain(workdir, cfg, bin_dir):
    save = workdir / "pretrain"
    save.mkdir(exist_ok=True)
    cmd = pretrain_command(workdir, cfg, bin_dir)
    print(f"[pretrain] fairseq-train, its whole log in {save / 'train.log'}", flush=True)
    if stream(cmd, save / "train.log", "pretrain", progress=EpochProgress(cfg["pre_epochs"])) != 0:
        raise SystemExit(f"pre-training failed; see {save / 'train.log'}")


def pretrain_command(workdir, cfg, bin_dir):
    return train_command(bin_dir, workdir / "pre-bin", workdir / "pretrain", dict(cfg, max_epoch=cfg["pre_epochs"]),
                         "baseline", PRETRAIN_SEED)


def sweep_argv(workdir, cfg, seeds, parallel, dry_run):
    ls = f"--label-smoothing {LABEL_SMOOTHING}"
    return [
        str(workdir / "ft-bin"), "--checkpoint", str(workdir / "pretrain" / "checkpoint_last.pt"),
        "--work", str(workdir / "sweep"), "--seeds", *map(str, seeds), "--reserve-p", str(cfg["reserve_p"]),
        "--metric", "loss", "--parallel", str(parallel),
        "--criterion", f"--criterion label_smoothed_cross_entropy {ls}",
        "--rdrop-criterion", f"--criterion label_smoothed_cross_entropy_with_rdrop {ls} --rdrop-alpha {cfg['rdrop_alpha']}",
        *(["--dry-run"] if dry_run else []),
        # run.py's --metric reads fairseq's "simple" valid lines ("| loss 4.2 |")
        "--", *transformer_flags(dict(cfg, max_epoch=cfg["ft_epochs"])), "--cpu", "--num-workers", "0",
        *KEEP_LAST_BATCH, "--log-format", "simple", "--log-interval", "20",
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="fine-tuning seeds")
    p.add_argument("--workdir", type=Path, help="default: <repo>/work/childtuning-multi30k-<setting>")
    p.add_argument("--parallel", type=int, default=2, help="fine-tuning jobs at a time (run.py --parallel)")
    p.add_argument("--dry-run", action="store_true", help="print the pre-training and fine-tuning commands only")
    args = p.parse_args(argv)
    cfg = SETTINGS[args.setting]
    (a, b), (c, d) = cfg["pre_lines"], cfg["ft_lines"]
    assert b < c or d < a, "the pre-training and fine-tuning slices overlap"
    workdir = (args.workdir or REPO / "work" / f"childtuning-multi30k-{args.setting}").resolve()
    bin_dir = Path(sys.executable).parent
    if args.dry_run:
        print("$ " + shlex.join(map(str, pretrain_command(workdir, cfg, bin_dir))), flush=True)
        return sweep.main(sweep_argv(workdir, cfg, args.seeds, args.parallel, True))
    check_same_config(workdir, cfg)
    stages = Stages(workdir / "stages")
    try:
        stages.run("extract", extract, workdir, cfg)
    except DataError as error:  # a corpus file missing or wrong: say which, no traceback
        sys.exit(f"error: {error}")
    stages.run("spm", train_spm, workdir, cfg["spm_vocab"], "unigram")
    stages.run("encode", encode, workdir, ("train", "pre", "ft", "valid", "test"))
    stages.run("dict", build_dict, workdir, bin_dir)
    for part in ("pre", "ft"):
        stages.run(f"{part}-bin", binarize_joined, workdir / "spm", workdir / f"{part}-bin", "de", "en",
                   bin_dir=bin_dir, tag=f"{part}-bin", train=part, srcdict=workdir / "dict" / "dict.de.txt")
    stages.run("pretrain", pretrain, workdir, cfg, bin_dir)
    sweep.main(sweep_argv(workdir, cfg, args.seeds, args.parallel, False))
    last = read_valid_stats(workdir / "pretrain" / "train.log")[-1]
    print(f"\npre-trained model (checkpoint_last, epoch {last['epoch']}), where every run starts: "
          f"valid loss {last['valid_loss']:.4f}", flush=True)


if __name__ == "__main__":
    main()
