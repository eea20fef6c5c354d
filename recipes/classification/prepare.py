"""CoLA, SST-2, STS-B and GoEmotions in fairseq's sentence_prediction layout (the CPU evidence
recipes; see README.md): word-level for the small encoders trained here, or BERT's WordPiece for a
converted BERT encoder (convert_bert.py).

    <workdir>/raw/{train,valid}.input0 [.input1]   one sentence a line: lowercased words, or WordPiece pieces
    <workdir>/bin/input0, input1                   fairseq-preprocess output with one shared dict.txt
                                                   (built on the training inputs, pretrain.py's or the BERT's)
    <workdir>/bin/label                            SST-2, CoLA: fairseq-preprocess of the 0/1 labels (as GLUE)
                                                   STS-B: {train,valid}.label, score / 5 (as fairseq's GLUE script)
                                                   GoEmotions: labels.txt + {train,valid}.labels (names)

Files come from ``RDROP_DATA_DIR`` (the project's shared data folder) or are downloaded from the
public GitHub commits named in ../shared/data/MANIFEST.md, checked by sha256 either way.
"""
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.classification.wordpiece import WordPiece, read_vocab  # noqa: E402
from recipes.common.data import (DATA_DIR_ENV, DataError, Stages, atomic_path, cache_dir, download,  # noqa: E402
                                 resolve, sha256_of)

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
    "glue/CoLA/train.tsv": (
        f"{RAW}/felipefreitas93/NLPdatasets/9bd879702275db532085b80ebd08e2e4b3255b0a/CoLA/train.tsv",
        "1f8f2b073087998f717d11f4f9fcb0f16dd78b5d29643d57d9126bc915629a4a"),
    # CoLA's in-domain dev set: the public file is test_idd.tsv with a header line, which the data
    # folder's dev.tsv leaves out; the sha256 is of dev.tsv (fetch drops the header of a download)
    "glue/CoLA/dev.tsv": (
        f"{RAW}/felipefreitas93/NLPdatasets/b7d487e4f57144d7e5011d1499095c043e45f192/CoLA/test_idd.tsv",
        "71e5c6ff9726d64d0ff7186596f4a4a8d91df0b8e3a4c34aa45e8e8b5659179a"),
}
BINARY = ("sst2", "cola")  # 0/1 labels, binarized with a label dictionary as fairseq's GLUE script does
HEADER_DROPPED = {"glue/CoLA/dev.tsv"}  # files stored without the first line of their public source
SPLIT_FILES = {  # dataset -> {our split: corpus file}
    "cola": {"train": "glue/CoLA/train.tsv", "valid": "glue/CoLA/dev.tsv"},
    "sst2": {"train": "glue/SST-2/train.tsv", "valid": "glue/SST-2/dev.tsv"},
    "stsb": {"train": "glue/STS-B/sts-train.csv", "valid": "glue/STS-B/sts-dev.csv"},
    "goemotions": {"train": "goemotions/train.tsv", "valid": "goemotions/dev.tsv"},
}
_WORDS = re.compile(r"\w+|[^\w\s]")


def fetch(rel):
    url, sha = SOURCES[rel]
    if rel not in HEADER_DROPPED or os.environ.get(DATA_DIR_ENV):
        return resolve(rel, url, sha)
    path = cache_dir() / rel
    if not (path.is_file() and sha256_of(path) == sha):
        original = download(url, cache_dir() / (rel + ".orig"), None)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(original.read_text(encoding="utf-8").splitlines(keepends=True)[1:]),
                           encoding="utf-8")
        if sha256_of(path) != sha:
            raise DataError(f"{path} (from {url} without its first line) does not match sha256 {sha}")
    return path


def tokenize(text):
    return " ".join(_WORDS.findall(text.lower()))


def parse_lines(dataset, lines, where, label_names=None):
    """(raw inputs tuple, label string or None) per line of a file in ``dataset``'s format, and
    whether it is labelled. Labelled: the corpus's own train/dev format; unlabelled: the blind test
    sets' (../shared/blind/README.md). A line of neither is an error naming ``where`` and the line.

        cola        sentence<TAB>label (0/1)               | sentence
        sst2        header sentence<TAB>label, then rows    | sentence
        stsb        genre, file, years, id, score, s1, s2   | index<TAB>s1<TAB>s2
        goemotions  text<TAB>label ids (a,b)<TAB>comment id | text<TAB>comment id

    GoEmotions' label ids are read as indices into ``label_names`` (default: the corpus's labels.txt).
    """
    lines = [line.rstrip("\r") for line in lines]
    if dataset == "sst2" and lines and lines[0] == "sentence\tlabel":
        lines, labelled = lines[1:], True
    elif dataset == "sst2":
        labelled = False
    else:
        first = len(lines[0].split("\t")) if lines else 0
        labelled = first == {"cola": 2, "stsb": 7, "goemotions": 3}[dataset] or (dataset == "stsb" and first > 7)
    out = []
    for number, line in enumerate(lines, 2 if dataset == "sst2" and labelled else 1):
        fields = line.split("\t")
        try:
            if dataset in ("cola", "sst2") and labelled:
                sentence, label = line.rsplit("\t", 1)
                if label.strip() not in ("0", "1"):
                    raise ValueError(f"label {label!r} is not 0 or 1")
                out.append(((sentence,), label.strip()))
            elif dataset in ("cola", "sst2"):
                if "\t" in line:
                    raise ValueError("a tab in an unlabelled sentence line")
                out.append(((line,), None))
            elif dataset == "stsb" and labelled:  # a few lines carry extra trailing fields
                out.append(((fields[5], fields[6]), f"{float(fields[4]) / 5.0:g}"))
            elif dataset == "stsb":
                if len(fields) != 3:
                    raise ValueError(f"{len(fields)} tab-separated fields, expected 3 (index, sentence1, sentence2)")
                out.append(((fields[1], fields[2]), None))
            elif labelled:
                names = label_names or goemotions_labels()
                if len(fields) != 3:
                    raise ValueError(f"{len(fields)} tab-separated fields, expected 3 (text, label ids, comment id)")
                out.append(((fields[0],), " ".join(names[int(i)] for i in fields[1].split(","))))
            else:
                if len(fields) != 2:
                    raise ValueError(f"{len(fields)} tab-separated fields, expected 2 (text, comment id)")
                out.append(((fields[0],), None))
        except (ValueError, IndexError) as error:
            raise ValueError(f"{where}:{number}: not a {'labelled' if labelled else 'unlabelled'} {dataset} "
                             f"line ({error}): {line[:80]!r}") from None
    return out, labelled


def read_examples(dataset, split, tokenizer=tokenize):
    """(tokenized inputs tuple, label string) per example of the corpus's ``split``, in corpus order.
    Labels: SST-2 and CoLA 0/1, STS-B the score / 5, GoEmotions the label names."""
    path = fetch(SPLIT_FILES[dataset][split])
    examples, labelled = parse_lines(dataset, path.read_text(encoding="utf-8").splitlines(), path)
    if not labelled:
        raise ValueError(f"{path}: not in the labelled format of {dataset}")
    return [(tuple(tokenizer(text) for text in inputs), label) for inputs, label in examples]


def goemotions_labels():
    return fetch("goemotions/labels.txt").read_text(encoding="utf-8").split()


def write_examples(folder, split, examples):
    """``<split>.input0`` [``.input1``] and, for labelled examples, ``<split>.label`` under ``folder``."""
    for k in range(len(examples[0][0])):
        (folder / f"{split}.input{k}").write_text("".join(inputs[k] + "\n" for inputs, _ in examples), encoding="utf-8")
    if examples[0][1] is not None:
        (folder / f"{split}.label").write_text("".join(label + "\n" for _, label in examples), encoding="utf-8")


def write_raw(workdir, dataset, max_lines, tokenizer=tokenize):
    raw = workdir / "raw"
    with atomic_path(raw) as tmp:
        tmp.mkdir(parents=True)
        for split in ("train", "valid"):
            examples = read_examples(dataset, split, tokenizer)
            if max_lines and max_lines.get(split):
                examples = examples[: max_lines[split]]
            write_examples(tmp, split, examples)


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
        if dataset in BINARY:
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


def wordpiece_tokenizer(vocab):
    """BERT's uncased WordPiece over ``vocab`` (a vocab.txt), as a function text -> space-joined pieces."""
    split = WordPiece(read_vocab(vocab))
    return lambda text: " ".join(split(text))


def prepare(workdir, dataset, nwords=10000, max_lines=None, bin_dir=None, srcdict=None, vocab=None):
    """Prepare ``dataset`` under ``workdir`` (resumable); returns the binarized data folder.
    ``srcdict``: binarize with this dictionary instead of one built on the training inputs;
    ``vocab``: a BERT vocab.txt, to tokenize with its WordPiece (convert_bert.py's) instead of words."""
    workdir = Path(workdir)
    bin_dir = bin_dir or Path(sys.executable).parent
    stages = Stages(workdir / "stages")
    stages.run("raw", write_raw, workdir, dataset, max_lines, wordpiece_tokenizer(vocab) if vocab else tokenize)
    stages.run("binarize", binarize, workdir, dataset, nwords, bin_dir, srcdict)
    return workdir / "bin"


def prepare_file(workdir, dataset, path, out, vocab=None, bin_dir=None):
    """Prepare any file in ``dataset``'s format (parse_lines) exactly as ``workdir``'s dev set: the same
    tokenizer (``vocab``: the run's WordPiece; else words), binarized with the work folder's
    dictionaries as split ``test`` of a data folder ``out`` (input0/ [input1/] [label/]). Returns
    (out, number of examples, labelled)."""
    workdir, out = Path(workdir), Path(out)
    bin_dir = Path(bin_dir or Path(sys.executable).parent)
    data = workdir / "bin"
    names = (data / "label" / "labels.txt").read_text(encoding="utf-8").split() if dataset == "goemotions" else None
    examples, labelled = parse_lines(dataset, Path(path).read_text(encoding="utf-8").splitlines(), path, names)
    if not examples:
        raise ValueError(f"{path}: no examples")
    tokenizer = wordpiece_tokenizer(vocab) if vocab else tokenize
    examples = [(tuple(tokenizer(text) for text in inputs), label) for inputs, label in examples]
    with atomic_path(out) as tmp:
        (tmp / "raw").mkdir(parents=True)
        write_examples(tmp / "raw", "test", examples)
        for inp in sorted(p.name for p in data.glob("input*")):
            subprocess.run([str(bin_dir / "fairseq-preprocess"), "--only-source", "--testpref",
                            str(tmp / "raw" / f"test.{inp}"), "--destdir", str(tmp / inp), "--srcdict",
                            str(data / inp / "dict.txt"), "--workers", "1"], check=True, capture_output=True)
        label = tmp / "label"
        label.mkdir()
        # the tasks read the label dictionary even where there are no labels
        if dataset == "goemotions":
            shutil.copyfile(data / "label" / "labels.txt", label / "labels.txt")
        elif dataset in BINARY:
            shutil.copyfile(data / "label" / "dict.txt", label / "dict.txt")
        if labelled and dataset in BINARY:
            subprocess.run([str(bin_dir / "fairseq-preprocess"), "--only-source", "--testpref",
                            str(tmp / "raw" / "test.label"), "--destdir", str(label), "--srcdict",
                            str(data / "label" / "dict.txt"), "--workers", "1"], check=True, capture_output=True)
        elif labelled:
            ext = "label" if dataset == "stsb" else "labels"
            shutil.copyfile(tmp / "raw" / "test.label", label / f"test.{ext}")
    return out, len(examples), labelled
