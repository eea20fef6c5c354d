"""SST-2, STS-B and GoEmotions in fairseq's sentence_prediction layout, word-level, for small
encoders trained from scratch (the CPU evidence recipes; see README.md).

    <workdir>/raw/{train,valid}.input0 [.input1]   lowercased, word-tokenized text, one sentence a line
    <workdir>/bin/input0, input1                   fairseq-preprocess output with one shared dict.txt
                                                   (built on the training inputs, or pretrain.py's)
    <workdir>/bin/label                            SST-2: fairseq-preprocess of the labels (as GLUE)
                                                   STS-B: {train,valid}.label, score / 5 (as fairseq's GLUE script)
                                                   GoEmotions: labels.txt + {train,valid}.labels (names)

Files come from ``RDROP_DATA_DIR`` (the project's shared data folder) or are downloaded from the
public GitHub commits named in ../shared/data/MANIFEST.md, checked by sha256 either way.
"""
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.common.data import Stages, atomic_path, resolve  # noqa: E402

RAW = "https://raw.githubusercontent.com"
SOURCES = {  # rel path under the data folder -> (public URL, sha256), as in MANIFEST.md
    "glue/SST-2/train.tsv": (
        f"{RAW}/eyalbd2/Reproducing-AutoPrompt/6288fb5bec9c572f2492875ae0111df5b6daed11/glue_data/SST-2/train_full.tsv",
        "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
    "glue/SST-2/dev.tsv": (
        f"{RAW}/eyalbd2/Reproducing-AutoPrompt/6288fb5bec9c572f2492875ae0111df5b6daed11/glue_data/SST-2/dev.tsv",
        "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
    "glue/STS-B/sts-train.csv": (
        f"{RAW}/aivilmo/textual-similarity/3fe0911a2e267b1cd7b2602c095c402ebadf4271/stsbenchmark/sts-train.csv",
        "d52e1db23c2483099f2ff4d9cd80a0f98be6438748b65e21f2f2244da0164ab1"),
    "glue/STS-B/sts-dev.csv": (
        f"{RAW}/aivilmo/textual-similarity/3fe0911a2e267b1cd7b2602c095c402ebadf4271/stsbenchmark/sts-dev.csv",
        "5d7e944d8b02734b07bfdb5df67db3420c64bed153fcaa1ba47ad03480cf4234"),
    "goemotions/train.tsv": (
        f"{RAW}/monologg/GoEmotions-pytorch/b75f9d3a8b76bc1060687925b04ca98a1b8ea66b/data/original/train.tsv",
        "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5"),
    "goemotions/dev.tsv": (
        f"{RAW}/monologg/GoEmotions-pytorch/b75f9d3a8b76bc1060687925b04ca98a1b8ea66b/data/original/dev.tsv",
        "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62"),
    "goemotions/labels.txt": (
        f"{RAW}/monologg/GoEmotions-pytorch/b75f9d3a8b76bc1060687925b04ca98a1b8ea66b/data/original/labels.txt",
        "45c3ef86782d2a4d7fedcd6d8c111aa0d0e94720689bd164fac94fefb4495a89"),
}
SPLIT_FILES = {  # dataset -> {our split: corpus file}
    "sst2": {"train": "glue/SST-2/train.tsv", "valid": "glue/SST-2/dev.tsv"},
    "stsb": {"train": "glue/STS-B/sts-train.csv", "valid": "glue/STS-B/sts-dev.csv"},
    "goemotions": {"train": "goemotions/train.tsv", "valid": "goemotions/dev.tsv"},
}
_WORDS = re.compile(r"\w+|[^\w\s]")


def fetch(rel):
    url, sha = SOURCES[rel]
    return resolve(rel, url, sha)


def tokenize(text):
    return " ".join(_WORDS.findall(text.lower()))


def read_examples(dataset, split):
    """(inputs tuple, label string) per example, in corpus order."""
    lines = fetch(SPLIT_FILES[dataset][split]).read_text(encoding="utf-8").splitlines()
    out = []
    if dataset == "sst2":
        for line in lines[1:]:  # header: sentence<TAB>label
            sentence, label = line.rsplit("\t", 1)
            out.append(((tokenize(sentence),), label.strip()))
    elif dataset == "stsb":
        for line in lines:  # genre, file, years, id, score, sentence1, sentence2 [, extra fields]
            fields = line.rstrip("\r").split("\t")
            out.append(((tokenize(fields[5]), tokenize(fields[6])), f"{float(fields[4]) / 5.0:g}"))
    else:
        names = goemotions_labels()
        for line in lines:  # text<TAB>comma-separated label ids<TAB>comment id
            text, ids, _ = line.split("\t")
            out.append(((tokenize(text),), " ".join(names[int(i)] for i in ids.split(","))))
    return out


def goemotions_labels():
    return fetch("goemotions/labels.txt").read_text(encoding="utf-8").split()


def write_raw(workdir, dataset, max_lines):
    raw = workdir / "raw"
    with atomic_path(raw) as tmp:
        tmp.mkdir(parents=True)
        for split in ("train", "valid"):
            examples = read_examples(dataset, split)
            if max_lines and max_lines.get(split):
                examples = examples[: max_lines[split]]
            for k in range(len(examples[0][0])):
                (tmp / f"{split}.input{k}").write_text(
                    "".join(inputs[k] + "\n" for inputs, _ in examples), encoding="utf-8")
            (tmp / f"{split}.label").write_text("".join(label + "\n" for _, label in examples), encoding="utf-8")


def build_dictionary(raw, dest, nwords):
    """One word dictionary over every training input (both sentences of a pair), in fairseq's format."""
    write_word_dictionary(sorted(raw.glob("train.input*")), dest, nwords)


def write_word_dictionary(paths, dest, nwords):
    """The ``nwords`` most frequent words seen at least twice in ``paths``, in fairseq's format.
    A literal <unk> (WikiText's) is left out: fairseq's Dictionary has that symbol already."""
    counts = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                counts.update(w for w in line.split() if w != "<unk>")
    words = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= 2][:nwords]
    dest.write_text("".join(f"{w} {counts[w]}\n" for w in words), encoding="utf-8")


def binarize(workdir, dataset, nwords, bin_dir, srcdict=None):
    raw = workdir / "raw"
    tool = str(Path(bin_dir) / "fairseq-preprocess")
    with atomic_path(workdir / "bin") as tmp:
        tmp.mkdir(parents=True)
        if srcdict:  # a pre-trained encoder's dictionary (pretrain.py): its word ids
            shutil.copyfile(srcdict, tmp / "dict.txt")
        else:
            build_dictionary(raw, tmp / "dict.txt", nwords)
        for inp in sorted({p.suffix[1:] for p in raw.glob("train.input*")}):
            subprocess.run([tool, "--only-source", "--trainpref", str(raw / f"train.{inp}"),
                            "--validpref", str(raw / f"valid.{inp}"), "--destdir", str(tmp / inp),
                            "--srcdict", str(tmp / "dict.txt"), "--workers", "1"], check=True)
        label = tmp / "label"
        if dataset == "sst2":
            subprocess.run([tool, "--only-source", "--trainpref", str(raw / "train.label"),
                            "--validpref", str(raw / "valid.label"), "--destdir", str(label),
                            "--workers", "1"], check=True)
        else:
            label.mkdir()
            ext = "label" if dataset == "stsb" else "labels"
            for split in ("train", "valid"):
                (label / f"{split}.{ext}").write_bytes((raw / f"{split}.label").read_bytes())
            if dataset == "goemotions":
                (label / "labels.txt").write_text("\n".join(goemotions_labels()) + "\n", encoding="utf-8")


def prepare(workdir, dataset, nwords=10000, max_lines=None, bin_dir=None, srcdict=None):
    """Prepare ``dataset`` under ``workdir`` (resumable); returns the binarized data folder.
    ``srcdict``: binarize with this dictionary instead of one built on the training inputs."""
    workdir = Path(workdir)
    bin_dir = bin_dir or Path(sys.executable).parent
    stages = Stages(workdir / "stages")
    stages.run("raw", write_raw, workdir, dataset, max_lines)
    stages.run("binarize", binarize, workdir, dataset, nwords, bin_dir, srcdict)
    return workdir / "bin"
