"""The checkpoints in data/flat_layout/: how they are made, and the command lines that made them
(tests/rdrop_fairseq/test_flat_layout_checkpoints.py resumes them with the same ones; other tests
train on its tiny corpus).

    python tests/flat_layout_checkpoints.py VENV_BIN USER_DIR

VENV_BIN: an environment's bin/ (fairseq-train, python); USER_DIR: the plugin to save with (its
rdrop_fairseq/ folder). Writes the tiny synthetic corpus data-bin/ and ml-bin/ (kept if they exist,
so every environment trains on the same files) and fairseq-<version>/ with:

    rdrop.pt             transformer, label_smoothed_cross_entropy_with_rdrop, adam, --eval-bleu, --patience
    childtuning_mask.pt  the ChildTuning-D mask of rdrop.pt (python -m rdrop_fairseq.childtuning_mask)
    childtuning.pt       rdrop.pt fine-tuned with childtuning_adam in mode D and that mask
    multilabel.pt        a RoBERTa encoder, sentence_prediction_multilabel, sentence_prediction_with_rdrop
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "flat_layout"
TRANSLATION_DATA = DATA / "data-bin"
MULTILABEL_DATA = DATA / "ml-bin"


def common(user_dir):
    return ["--cpu", "--seed", "1", "--num-workers", "0", "--batch-size", "8", "--required-batch-size-multiple", "1",
            "--log-format", "simple", "--log-interval", "1", "--no-progress-bar", "--no-epoch-checkpoints",
            "--user-dir", str(user_dir)]


TRANSFORMER = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "8",
               "--decoder-embed-dim", "8", "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
               "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings",
               "--dropout", "0.3"]
TRANSFORMER_CRITERION = ["--criterion", "label_smoothed_cross_entropy_with_rdrop", "--label-smoothing", "0.1",
                         "--rdrop-alpha", "5"]
RDROP = ["--optimizer", "adam", "--lr", "1e-3", "--patience", "3", "--eval-bleu",
         "--eval-bleu-args", '{"beam": 1, "max_len_b": 10}', "--eval-bleu-detok", "space",
         "--best-checkpoint-metric", "bleu", "--maximize-best-checkpoint-metric"]
RDROP_EPOCHS = 2  # 48 sentences in batches of 8: 6 updates an epoch


def childtuning(mask):
    return ["--optimizer", "childtuning_adam", "--childtuning-mode", "D", "--childtuning-reserve-p", "0.3",
            "--childtuning-mask", str(mask), "--lr", "1e-3"]


CHILDTUNING_UPDATES = 3
MULTILABEL = ["--task", "sentence_prediction_multilabel", "--arch", "roberta", "--encoder-layers", "1",
              "--encoder-embed-dim", "8", "--encoder-ffn-embed-dim", "16", "--encoder-attention-heads", "2",
              "--max-positions", "32", "--init-token", "0", "--shorten-method", "truncate",
              "--criterion", "sentence_prediction_with_rdrop", "--rdrop-alpha", "1", "--optimizer", "adam",
              "--lr", "1e-3"]
MULTILABEL_UPDATES = 3


def write_corpus(work):
    """Sentences of 3-8 of 20 words; the "translation" reverses them in another alphabet; labels
    a (a word < 5), b (a word >= 15), c (a word in 10..14), a when none applies."""
    rng = random.Random(1)
    for split, n in (("train", 48), ("valid", 16)):
        rows = [[rng.randrange(20) for _ in range(rng.randint(3, 8))] for _ in range(n)]
        (work / f"{split}.src").write_text("".join(" ".join(f"s{w}" for w in r) + "\n" for r in rows))
        (work / f"{split}.tgt").write_text("".join(" ".join(f"t{w}" for w in reversed(r)) + "\n" for r in rows))
        labels = [[name for name, hit in (("a", min(r) < 5), ("b", max(r) >= 15),
                                          ("c", any(10 <= w < 15 for w in r))) if hit] or ["a"] for r in rows]
        (work / f"{split}.labels").write_text("".join(" ".join(ls) + "\n" for ls in labels))


def make(bin_dir, user_dir):
    bin_dir, user_dir = Path(bin_dir).resolve(), Path(user_dir).resolve()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(user_dir.parent))

    def run(tool, *args, log):
        # from the temporary folder: `python -m` puts the working directory first on sys.path, where
        # another checkout's rdrop_fairseq would shadow USER_DIR's
        with open(log, "w") as f:
            subprocess.run([str(bin_dir / tool), *map(str, args)], env=env, stdout=f, stderr=subprocess.STDOUT,
                           cwd=log.parent, check=True)

    version = subprocess.run([str(bin_dir / "python"), "-c", "import fairseq; print(fairseq.__version__)"],
                             env=env, capture_output=True, text=True, cwd=user_dir.parent, check=True).stdout.strip()
    out = DATA / f"fairseq-{version}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not TRANSLATION_DATA.is_dir() or not MULTILABEL_DATA.is_dir():
            write_corpus(work)
            run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", work / "train",
                "--validpref", work / "valid", "--destdir", TRANSLATION_DATA, "--joined-dictionary", "--workers", "1",
                log=work / "preprocess.log")
            run("fairseq-preprocess", "--only-source", "--trainpref", work / "train.src", "--validpref",
                work / "valid.src", "--destdir", MULTILABEL_DATA / "input0", "--workers", "1",
                log=work / "preprocess.log")
            (MULTILABEL_DATA / "label").mkdir(exist_ok=True)
            (MULTILABEL_DATA / "label" / "labels.txt").write_text("a\nb\nc\n")
            for split in ("train", "valid"):
                shutil.copy(work / f"{split}.labels", MULTILABEL_DATA / "label")
            for log in (TRANSLATION_DATA / "preprocess.log", MULTILABEL_DATA / "input0" / "preprocess.log"):
                log.unlink(missing_ok=True)

        base = [TRANSLATION_DATA, *TRANSFORMER, *TRANSFORMER_CRITERION, *common(user_dir)]
        run("fairseq-train", *base, *RDROP, "--max-epoch", RDROP_EPOCHS, "--save-dir", work / "rdrop",
            log=work / "rdrop.log")
        shutil.copy(work / "rdrop" / "checkpoint_last.pt", out / "rdrop.pt")

        mask = out / "childtuning_mask.pt"
        run("python", "-m", "rdrop_fairseq.childtuning_mask", *base, *childtuning(mask),
            "--restore-file", out / "rdrop.pt", "--childtuning-fisher-batches", "2", log=work / "mask.log")
        run("fairseq-train", *base, *childtuning(mask), "--finetune-from-model", out / "rdrop.pt",
            "--max-update", CHILDTUNING_UPDATES, "--save-dir", work / "childtuning", log=work / "childtuning.log")
        shutil.copy(work / "childtuning" / "checkpoint_last.pt", out / "childtuning.pt")

        run("fairseq-train", MULTILABEL_DATA, *MULTILABEL, *common(user_dir), "--max-update", MULTILABEL_UPDATES,
            "--save-dir", work / "multilabel", log=work / "multilabel.log")
        shutil.copy(work / "multilabel" / "checkpoint_last.pt", out / "multilabel.pt")
    for path in sorted(out.iterdir()):
        print(f"{path.stat().st_size:>8}  {path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    make(*sys.argv[1:])
