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
# The corpus's own lowercased, normalised, tokenised text (data/task1/tok): what the full-data
# reference protocol trains on and scores against with sacreBLEU -tok none.
TOK_URL = f"https://raw.githubusercontent.com/multi30k/dataset/{COMMIT}/data/task1/tok/{{name}}"
TOK_SHA256 = {
    "train.lc.norm.tok.de": "cb5a23529b65ec2061f1dc446192a9c37382b63cc75f81a0be59d34894b3a505",
    "train.lc.norm.tok.en": "08925f8e0572bcd5a006702fc5fe20e2d77c6917d4eebd576fc20de6693c2119",
    "val.lc.norm.tok.de": "97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00",
    "val.lc.norm.tok.en": "46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec",
    "test_2016_flickr.lc.norm.tok.de": "c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4",
    "test_2016_flickr.lc.norm.tok.en": "5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2",
}
SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}  # fairseq name -> corpus name
LANGS = ("de", "en")


def corpus_file(name):
    return resolve(f"multi30k/raw/{name}", URL.format(name=name), SHA256[name])


def read_corpus(corpus, lang, text):
    """Lines of one split: ``text`` "raw" (cased, untokenised) or "tok" (lowercased, tokenised)."""
    if text == "tok":
        name = f"{corpus}.lc.norm.tok.{lang}"
        path = resolve(f"multi30k/tok/{name}", TOK_URL.format(name=name), TOK_SHA256[name])
        return path.read_text(encoding="utf-8").splitlines()
    with gzip.open(corpus_file(f"{corpus}.{lang}.gz"), "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def extract(workdir, max_lines, text="raw"):
    """Write every split; ``max_lines[split]`` (None = all) keeps only the first lines."""
    with atomic_path(workdir / "raw") as out:
        out.mkdir(parents=True)
        for split, corpus in SPLITS.items():
            for lang in LANGS:
                lines = read_corpus(corpus, lang, text)
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


def encode(workdir, splits=tuple(SPLITS)):
    """raw/{split}.{de,en} -> spm/ for each of ``splits`` (file names under raw/)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(workdir / "spm.model"))
    with atomic_path(workdir / "spm") as out:
        out.mkdir()
        for split in splits:
            for lang in LANGS:
                lines = (workdir / "raw" / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
                pieces = [" ".join(p) for p in sp.encode(lines, out_type=str)]
                (out / f"{split}.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")


def prepare(workdir, vocab_size, model_type="unigram", max_lines=None, bin_dir=None, text="raw"):
    """Run every stage not yet done under ``workdir``; return the fairseq data folder."""
    workdir = Path(workdir)
    stages = Stages(workdir / "stages")
    stages.run("extract", extract, workdir, max_lines or {}, text)
    stages.run("spm", train_spm, workdir, vocab_size, model_type)
    stages.run("encode", encode, workdir)
    stages.run("binarize", binarize_joined, workdir / "spm", workdir / "data-bin", "de", "en",
               bin_dir=bin_dir, tag="prepare")
    return workdir / "data-bin"
