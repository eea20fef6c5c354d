"""Multi30k (task 1) German->English: raw gzipped text -> joint sentencepiece -> fairseq binary data.

Stages (each resumable, see ``recipes/common/data.py``):
  extract   raw/{train,valid,test}.{de,en}  plain text, optionally sliced to the first N lines
  spm       spm.model                       one joint de+en sentencepiece model on train
  encode    spm/{split}.{de,en}             pieces separated by spaces
  binarize  data-bin/                       fairseq-preprocess --joined-dictionary
The test split is test_2016_flickr; detokenized references for sacreBLEU stay in raw/test.en.
"""

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from recipes.common.data import Stages, atomic_path, binarize_joined, resolve  # noqa: E402

COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
URL = f"https://raw.githubusercontent.com/multi30k/dataset/{COMMIT}/data/task1/raw/{{name}}"
# sha256 of the files at that commit (as in ../shared/data/MANIFEST.md beside the repo).
SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}
SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}  # fairseq name -> corpus name
LANGS = ("de", "en")


def corpus_file(name):
    return resolve(f"multi30k/raw/{name}", URL.format(name=name), SHA256[name])


def extract(workdir, max_lines):
    """Decompress every split; ``max_lines[split]`` (None = all) keeps only the first lines."""
    with atomic_path(workdir / "raw") as out:
        out.mkdir(parents=True)
        for split, corpus in SPLITS.items():
            for lang in LANGS:
                with gzip.open(corpus_file(f"{corpus}.{lang}.gz"), "rt", encoding="utf-8") as f:
                    lines = [line.rstrip("\n") for line in f]
                lines = lines[: max_lines.get(split)]
                (out / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def train_spm(workdir, vocab_size, model_type):
    import sentencepiece as spm

    raw = workdir / "raw"
    with atomic_path(workdir / "spm.model") as tmp:
        prefix = tmp.with_suffix("")  # sentencepiece appends .model / .vocab itself
        spm.SentencePieceTrainer.train(
            input=f"{raw / 'train.de'},{raw / 'train.en'}",
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            # Small slices (the test's "tiny" setting) cannot fill a large vocabulary; let spm shrink it.
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
        Path(f"{prefix}.model").rename(tmp)
        Path(f"{prefix}.vocab").unlink()


def encode(workdir):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(workdir / "spm.model"))
    with atomic_path(workdir / "spm") as out:
        out.mkdir()
        for split in SPLITS:
            for lang in LANGS:
                lines = (workdir / "raw" / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
                pieces = [" ".join(p) for p in sp.encode(lines, out_type=str)]
                (out / f"{split}.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")


def prepare(workdir, vocab_size, model_type="unigram", max_lines=None, bin_dir=None):
    """Run every stage not yet done under ``workdir``; return the fairseq data folder."""
    workdir = Path(workdir)
    stages = Stages(workdir / "stages")
    stages.run("extract", extract, workdir, max_lines or {})
    stages.run("spm", train_spm, workdir, vocab_size, model_type)
    stages.run("encode", encode, workdir)
    stages.run("binarize", binarize_joined, workdir / "spm", workdir / "data-bin", "de", "en",
               bin_dir=bin_dir, tag="prepare")
    return workdir / "data-bin"
