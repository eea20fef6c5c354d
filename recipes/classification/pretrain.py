"""Pre-train the small encoder of the CPU evidence with masked_lm, so that the sentence-level
runs can fine-tune a pre-trained model, as the R-Drop paper (GLUE) and ChildTuning do.

    python recipes/classification/pretrain.py --setting cpu

The encoder (model.py's 2-layer d = 128 RoBERTa) learns masked-word prediction on unlabeled text: WikiText-2's
training split plus the *inputs* (never the labels, never a dev sentence) of the three tasks'
training sets, all lowercased and word-tokenized as prepare.py tokenizes the tasks. One word
dictionary over that text serves pre-training and every fine-tuning (prepare.py's ``srcdict``).

Outputs under ``--workdir`` (default <repo>/work/classification-pretrain-<setting>):
``raw/{train,valid}.txt``, ``bin/`` (fairseq-preprocess), ``ckpt/checkpoint_last.pt``,
``train.log``. Resumable: finished stages are skipped, and an interrupted training resumes
from its checkpoint_last.pt.
"""
import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.classification.model import SMALL, TINY, model_flags  # noqa: E402
from recipes.classification.prepare import read_examples, tokenize, write_word_dictionary  # noqa: E402
from recipes.common.data import Stages, atomic_path  # noqa: E402
from recipes.language_modeling.wikitext2.prepare import fetch_wikitext2  # noqa: E402

TASKS = ("sst2", "stsb", "goemotions")
SETTINGS = {
    # tests: a slice of each source, a few updates of the tiny encoder
    "tiny": dict(TINY, wiki_lines=300, task_lines=100, nwords=3000, tokens_per_sample=64,
                 batch_size=8, lr=1e-3, max_update=4, log_interval=1),
    # 3.56M words (WikiText-2 train 2.1M + the tasks' training inputs; 96% of them among the
    # 16,000 most frequent). 1,300 updates of 32 x 128 tokens = 1.5 epochs: sized to about 15
    # minutes on 2 CPU threads (~1.3 updates/s here; README.md gives the measured time and loss)
    "cpu": dict(SMALL, wiki_lines=None, task_lines=None, nwords=16000, tokens_per_sample=128,
                batch_size=32, lr=1e-3, max_update=1300, log_interval=100),
}


def wikitext_lines(path, limit):
    """WikiText-2 paragraphs as prepare.py tokenizes the tasks: lowercased words and punctuation.
    Headings are dropped; the corpus's <unk> stays one token (fairseq's own <unk>); @-@, @,@
    and @.@ (WikiText's split hyphens and number separators) go back to -, and . ."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("="):
                continue
            line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
            out.append(" <unk> ".join(tokenize(part) for part in line.split("<unk>")).strip())
            if limit and len(out) >= limit:
                break
    return out


def write_corpus(workdir, wiki_lines, task_lines):
    wiki = fetch_wikitext2()
    with atomic_path(workdir / "raw") as tmp:
        tmp.mkdir(parents=True)
        train = wikitext_lines(wiki / "wiki.train.tokens", wiki_lines)
        for task in TASKS:  # training inputs only: no label, no dev sentence
            examples = read_examples(task, "train")[:task_lines]
            train += [text for inputs, _ in examples for text in inputs if text]
        (tmp / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
        valid = wikitext_lines(wiki / "wiki.valid.tokens", wiki_lines)
        (tmp / "valid.txt").write_text("\n".join(valid) + "\n", encoding="utf-8")


def binarize(workdir, nwords, bin_dir):
    with atomic_path(workdir / "bin") as tmp:
        tmp.mkdir(parents=True)
        write_word_dictionary([workdir / "raw" / "train.txt"], tmp / "dict.txt", nwords)
        subprocess.run([str(Path(bin_dir) / "fairseq-preprocess"), "--only-source",
                        "--trainpref", str(workdir / "raw" / "train.txt"),
                        "--validpref", str(workdir / "raw" / "valid.txt"), "--destdir", str(tmp),
                        "--srcdict", str(tmp / "dict.txt"), "--workers", "1"], check=True)


def pretrain_command(bin_dir, workdir, cfg, seed):
    updates = cfg["max_update"]
    return [str(Path(bin_dir) / "fairseq-train"), str(workdir / "bin"), "--task", "masked_lm",
            "--criterion", "masked_lm", *model_flags(cfg),
            "--tokens-per-sample", str(cfg["tokens_per_sample"]), "--sample-break-mode", "none",
            "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
            "--weight-decay", "0.01", "--clip-norm", "0.0",
            "--lr-scheduler", "polynomial_decay", "--lr", str(cfg["lr"]),
            "--total-num-update", str(updates), "--warmup-updates", str(max(1, math.ceil(0.06 * updates))),
            "--max-update", str(updates), "--batch-size", str(cfg["batch_size"]), "--seed", str(seed),
            "--save-dir", str(workdir / "ckpt"), "--no-epoch-checkpoints",
            "--log-format", "json", "--log-interval", str(cfg["log_interval"]),
            "--cpu", "--num-workers", "0"]


def train(workdir, cfg, bin_dir, seed, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = pretrain_command(bin_dir, workdir, cfg, seed)
    with open(workdir / "train.log", "a", encoding="utf-8") as log:  # "a": a resumed run appends
        log.write(" ".join(cmd) + "\n")
        log.flush()
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)


def pretrain(workdir, setting="cpu", bin_dir=None, seed=1, threads=2):
    """Pre-train (resumable); returns (checkpoint, dict.txt) for fine-tuning."""
    cfg = SETTINGS[setting]
    workdir = Path(workdir)
    bin_dir = bin_dir or Path(sys.executable).parent
    stages = Stages(workdir / "stages")
    stages.run("corpus", write_corpus, workdir, cfg["wiki_lines"], cfg["task_lines"])
    stages.run("binarize", binarize, workdir, cfg["nwords"], bin_dir)
    stages.run("pretrain", train, workdir, cfg, bin_dir, seed, threads)
    return workdir / "ckpt" / "checkpoint_last.pt", workdir / "bin" / "dict.txt"


def default_workdir(setting):
    return REPO / "work" / f"classification-pretrain-{setting}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--workdir", type=Path, help="default: <repo>/work/classification-pretrain-<setting>")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training")
    args = parser.parse_args(argv)
    ckpt, dictionary = pretrain((args.workdir or default_workdir(args.setting)).resolve(), args.setting,
                                threads=args.threads)
    print(f"[pretrain] checkpoint {ckpt}\n[pretrain] dictionary {dictionary}", flush=True)


if __name__ == "__main__":
    main()
