"""WMT14 English->German as fairseq's examples/translation/prepare-wmt14en2de.sh, in Python.

Needs about 1.5 GB of downloads and ~4.5M sentence pairs: run it on your machine (it has never been
run end to end where this recipe was written, which has no internet; see README.md).

Stages (resumable, see recipes/common/data.py), outputs under WORKDIR/wmt14_en_de/ with the script's
file names:
  sources    the five archives (Europarl v7, CommonCrawl, News Commentary v12 -- v9 with --icml17 --,
             WMT17 dev, WMT14 test-full), extracted to WORKDIR/orig
  tokenize   tmp/train.tags.en-de.tok.{en,de}: normalize-punctuation.perl -> remove-non-printing-char.perl
             -> tokenizer.perl -a (aggressive hyphen splitting: "a @-@ b"), no lowercasing;
             tmp/test.{en,de} from newstest2014 (’ -> ' as the script's sed), test.raw.de kept untokenized
  split      tmp/valid.* = every 100th training line, tmp/train.* = the rest (before cleaning, as the script)
  bpe        code: 40k joint BPE on train.en + train.de; tmp/bpe.{train,valid,test}.*
  clean      train/valid: clean-corpus-n.perl -ratio 1.5 1 250 on the BPE'd text; test copied as is
  binarize   WORKDIR/data-bin: fairseq-preprocess --joined-dictionary

Usage: python prepare.py [--workdir work/wmt14] [--icml17] [--workers 8] [--sha256-file sums.txt]
       python prepare.py --orig DIR   (archives already extracted under DIR, as the script's orig/)
"""

import argparse
import itertools
import multiprocessing
import os
import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from recipes.common.data import (  # noqa: E402
    DataError, Stages, atomic_path, binarize_joined, cache_dir, download, sha256_of,
)
from recipes.common import moses  # noqa: E402

SRC, TGT = "en", "de"
PAIR = "en-de"
ARCHIVES = {
    "training-parallel-europarl-v7.tgz": "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz",
    "training-parallel-commoncrawl.tgz": "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "training-parallel-nc-v12.tgz": "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
    "dev.tgz": "http://data.statmt.org/wmt17/translation-task/dev.tgz",
    "test-full.tgz": "http://statmt.org/wmt14/test-full.tgz",
}
CORPORA = ["training/europarl-v7.de-en", "commoncrawl.de-en", "training/news-commentary-v12.de-en"]
# --icml17: the data of "Convolutional Sequence to Sequence Learning" (News Commentary v9).
ICML17 = ("training-parallel-nc-v9.tgz", "http://statmt.org/wmt14/training-parallel-nc-v9.tgz",
          "training/news-commentary-v9.de-en")
TEST = "test-full/newstest2014-deen-{side}.{lang}.sgm"
CHUNK = 2000  # lines per tokenizer task (tokenizer.perl's -lines default)


def write_lines(path, lines):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")


def read_lines(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line[:-1] if line.endswith("\n") else line


# --------------------------------------------------------------------------- sources


def fetch_sources(orig, archives, sha256_file):
    """Download (unless cached) and extract every archive into ``orig``."""
    pinned = _read_sums(sha256_file) if sha256_file else {}
    computed = []
    with atomic_path(orig) as tmp:
        tmp.mkdir(parents=True)
        for name, url in archives.items():
            path = cache_dir() / "wmt14" / name
            if not path.is_file():
                download(url, path, sha256=None)  # checked against --sha256-file below
            actual = sha256_of(path)
            computed.append(f"{actual}  {name}")
            if name in pinned and pinned[name] != actual:
                raise DataError(f"{path}: sha256 {actual}, but {sha256_file} pins {pinned[name]}")
            print(f"[wmt14] extracting {name}", flush=True)
            _extract(path, tmp)
    unpinned = [line for line in computed if line.split()[1] not in pinned]
    if unpinned:
        print("\n" + "!" * 78 + "\n[wmt14] WARNING: these archives were NOT checked against pinned sha256 sums\n"
              "(unknown to this recipe). Save these lines to a file and pass it as --sha256-file next time:\n"
              + "\n".join(unpinned) + "\n" + "!" * 78 + "\n", flush=True)


def _extract(path, dest):
    with tarfile.open(path) as archive:
        try:
            archive.extractall(dest, filter="data")  # refuses absolute paths and links out of dest
        except TypeError:  # Python without extraction filters (< 3.11.4): these archives are plain files
            archive.extractall(dest)


def _read_sums(path):
    sums = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


# --------------------------------------------------------------------------- text processing

_NORMALIZERS = {}


def _train_pipeline(args):
    """normalize-punctuation | remove-non-printing-char | tokenizer -a, on one chunk of lines."""
    import regex
    from sacremoses import MosesPunctNormalizer

    lang, lines = args
    if lang not in _NORMALIZERS:  # one per worker process and language
        _NORMALIZERS[lang] = MosesPunctNormalizer(lang=lang, perl_parity=True)
    lines = [_NORMALIZERS[lang].normalize(line) for line in lines]
    lines = [regex.sub(r"\p{C}", " ", line) for line in lines]  # remove-non-printing-char.perl
    return moses.tokenize_lines(lines, lang, aggressive_dash_splits=True)


def _chunks(lines, size):
    iterator = iter(lines)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def tokenize_train(orig, tmp_dir, corpora, workers):
    """tmp/train.tags.en-de.tok.*: the corpora concatenated in the script's order, tokenized in
    parallel chunks (imap keeps the order, as tokenizer.perl -threads does)."""
    with multiprocessing.Pool(workers) as pool:
        for lang in (SRC, TGT):
            write_lines(tmp_dir / f"train.tags.{PAIR}.tok.{lang}", _tokenized(pool, orig, corpora, lang))


def _tokenized(pool, orig, corpora, lang):
    for corpus in corpora:
        jobs = ((lang, chunk) for chunk in _chunks(read_lines(orig / f"{corpus}.{lang}"), CHUNK))
        for chunk in pool.imap(_train_pipeline, jobs):
            yield from chunk


def tokenize_test(orig, tmp_dir):
    for lang in (SRC, TGT):
        path = orig / TEST.format(side="src" if lang == SRC else "ref", lang=lang)
        write_lines(tmp_dir / f"test.{lang}", moses.tokenize_lines(moses.extract_xml_segments(path), lang, True))
        # sacreBLEU scores detokenized output against the untouched reference text
        write_lines(tmp_dir / f"test.raw.{lang}", moses.extract_xml_segments(path, straight_apostrophes=False))


def split(tmp_dir):
    for lang in (SRC, TGT):
        source = tmp_dir / f"train.tags.{PAIR}.tok.{lang}"
        write_lines(tmp_dir / f"valid.{lang}", (l for i, l in enumerate(read_lines(source), 1) if i % 100 == 0))
        write_lines(tmp_dir / f"train.{lang}", (l for i, l in enumerate(read_lines(source), 1) if i % 100 != 0))


def bpe(tmp_dir, prep, num_symbols, workers):
    from subword_nmt.apply_bpe import BPE

    with atomic_path(prep / "code") as codes:
        # (the script names the concatenation train.de-en although it holds en then de)
        moses.learn_joint_bpe(
            [tmp_dir / f"train.{lang}" for lang in (SRC, TGT)], tmp_dir / "train.de-en", codes, num_symbols, workers
        )
    with open(prep / "code", encoding="utf-8") as codes:
        encoder = BPE(codes)
    for lang in (SRC, TGT):
        for name in ("train", "valid", "test"):
            lines = (encoder.process_line(line) for line in read_lines(tmp_dir / f"{name}.{lang}"))
            write_lines(tmp_dir / f"bpe.{name}.{lang}", lines)


def clean(tmp_dir, prep):
    for name in ("train", "valid"):
        pairs = _same_length_pairs(*(read_lines(tmp_dir / f"bpe.{name}.{lang}") for lang in (SRC, TGT)))
        with atomic_path(prep / f"{name}.{SRC}") as src_tmp, atomic_path(prep / f"{name}.{TGT}") as tgt_tmp:
            with open(src_tmp, "w", encoding="utf-8") as src_out, open(tgt_tmp, "w", encoding="utf-8") as tgt_out:
                for src, tgt in moses.clean_pairs(pairs, 1, 250, ratio=1.5):
                    src_out.write(src + "\n")
                    tgt_out.write(tgt + "\n")
    for lang in (SRC, TGT):
        shutil.copyfile(tmp_dir / f"bpe.test.{lang}", prep / f"test.{lang}")
        shutil.copyfile(tmp_dir / f"test.raw.{lang}", prep / f"test.raw.{lang}")


def _same_length_pairs(src_lines, tgt_lines):
    for src, tgt in itertools.zip_longest(src_lines, tgt_lines):
        if src is None or tgt is None:
            raise DataError("the two sides of the BPE'd corpus differ in length")
        yield src, tgt


def prepare(workdir, icml17=False, workers=1, bpe_tokens=40000, orig=None, sha256_file=None):
    workdir = Path(workdir)
    prep = workdir / "wmt14_en_de"
    tmp = prep / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    archives, corpora = dict(ARCHIVES), list(CORPORA)
    if icml17:
        del archives["training-parallel-nc-v12.tgz"]
        archives[ICML17[0]] = ICML17[1]
        corpora[2] = ICML17[2]
    stages = Stages(workdir / "stages")
    if orig is None:
        orig = workdir / "orig"
        stages.run("sources", fetch_sources, orig, archives, sha256_file)
    orig = Path(orig)
    missing = [f"{c}.{lang}" for c in corpora for lang in (SRC, TGT) if not (orig / f"{c}.{lang}").is_file()]
    missing += [TEST.format(side=s, lang=lang) for s, lang in (("src", SRC), ("ref", TGT))
                if not (orig / TEST.format(side=s, lang=lang)).is_file()]
    if missing:
        raise DataError(f"{orig} lacks {', '.join(missing)} (the extracted archives of prepare-wmt14en2de.sh)")
    stages.run("tokenize_train", tokenize_train, orig, tmp, corpora, workers)
    stages.run("tokenize_test", tokenize_test, orig, tmp)
    stages.run("split", split, tmp)
    stages.run("bpe", bpe, tmp, prep, bpe_tokens, workers)
    stages.run("clean", clean, tmp, prep)
    stages.run("binarize", binarize_joined, prep, workdir / "data-bin", SRC, TGT, workers, tag="wmt14")
    return workdir / "data-bin"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="work/wmt14", help="output folder (default: %(default)s)")
    parser.add_argument("--icml17", action="store_true", help="News Commentary v9 instead of v12, as the script's --icml17")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="processes for tokenization, BPE vocabulary counting and binarization")
    parser.add_argument("--bpe-tokens", type=int, default=40000, help="BPE merges (default: %(default)s, the script's)")
    parser.add_argument("--orig", help="folder with the archives already extracted (skips the download)")
    parser.add_argument("--sha256-file", help="'sha256  archive-name' lines to check the downloads against")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.bpe_tokens < 1:
        parser.error("--workers and --bpe-tokens must be positive")
    if args.orig and not Path(args.orig).is_dir():
        parser.error(f"--orig {args.orig} is not a folder")
    if args.sha256_file and not Path(args.sha256_file).is_file():
        parser.error(f"--sha256-file {args.sha256_file} does not exist")
    try:
        data_bin = prepare(args.workdir, args.icml17, args.workers, args.bpe_tokens, args.orig, args.sha256_file)
    except DataError as error:  # a missing or wrong corpus file: say which, without a traceback
        sys.exit(f"error: {error}")
    print(f"[wmt14] fairseq data ready: {data_bin}")


if __name__ == "__main__":
    main()
