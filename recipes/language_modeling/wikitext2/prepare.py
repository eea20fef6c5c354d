"""Prepare WikiText-2 (tokenised, <unk>) text for ``fairseq-preprocess --only-source``.

Writes ``<out>/{train,valid,test}.tokens`` and ``<out>/dict.txt``.  The dictionary is always counted
on the *full* training split, even when ``--train-lines`` keeps only a prefix of it for a short CPU
run, so that every setting scores the same 33,278-word vocabulary and test perplexities stay
comparable across settings.

Corpus files: with ``RDROP_DATA_DIR`` set they are read from ``$RDROP_DATA_DIR/wikitext-2/``;
otherwise ``fetch_wikitext2`` downloads the public archive and checks every extracted file's sha256.
"""

import argparse
import collections
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # repo root, for recipes.common
from recipes.common.data import DATA_DIR_ENV, DataError, atomic_path, cache_dir, sha256_of  # noqa: E402

SPLITS = ("train", "valid", "test")
# sha256 of the corpus files themselves (see ../shared/data/MANIFEST.md): whatever the download
# route, these are what must come out of it.
SHA256 = {
    "wiki.train.tokens": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
# The original Salesforce S3 zip is gone; this public copy (pinned to a commit) holds the same files.
ARCHIVE_URL = (
    "https://github.com/kzhai/Porch/raw/f71c089fbfe3b0607cd814891c2542b7757d96b8/data/wikitext-2.tar.gz"
)


def fetch_wikitext2():
    """Return the folder holding wiki.{train,valid,test}.tokens, downloading it if needed.

    The archive itself has no published checksum, so each extracted member is checked against
    ``SHA256`` instead; a mismatch deletes the extracted copy and names the file.
    """
    local_root = os.environ.get(DATA_DIR_ENV)
    if local_root:
        folder = Path(local_root) / "wikitext-2"
        missing = [name for name in SHA256 if not (folder / name).is_file()]
        if missing:
            raise DataError(f"{DATA_DIR_ENV}={local_root} is set but {folder} lacks {', '.join(missing)}")
        return folder
    folder = cache_dir() / "wikitext-2"
    if all((folder / n).is_file() and sha256_of(folder / n) == h for n, h in SHA256.items()):
        return folder
    archive = cache_dir() / "wikitext-2.tar.gz"
    with atomic_path(archive) as part:
        print(f"[data] downloading {ARCHIVE_URL} -> {archive}", flush=True)
        part.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(ARCHIVE_URL) as response, open(part, "wb") as out:
            out.write(response.read())
    with atomic_path(folder) as tmp, tarfile.open(archive) as tar:
        tmp.mkdir(parents=True)
        for member in tar.getmembers():
            name = Path(member.name).name
            if name in SHA256 and member.isfile():
                (tmp / name).write_bytes(tar.extractfile(member).read())
        for name, expected in SHA256.items():
            if not (tmp / name).is_file():
                raise DataError(f"{ARCHIVE_URL} has no member named {name}")
            if sha256_of(tmp / name) != expected:
                raise DataError(f"{name} from {ARCHIVE_URL} does not match sha256 {expected}")
    return folder


def write_dictionary(train_path, out_path):
    """fairseq dictionary format: one ``word count`` line per type, most frequent first.

    The corpus's own ``<unk>`` token is left out: fairseq's Dictionary already has that symbol and
    refuses a dictionary file that lists it again; the text's ``<unk>`` maps onto it when binarised.
    """
    counts = collections.Counter()
    with open(train_path, encoding="utf-8") as f:
        for line in f:
            counts.update(line.split())
    counts.pop("<unk>", None)
    with open(out_path, "w", encoding="utf-8") as out:
        for word, count in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])):
            out.write(f"{word} {count}\n")
    return len(counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder for the text files and dict.txt")
    parser.add_argument("--train-lines", type=int, default=0,
                        help="keep only the first N lines of the training split (0 = all)")
    parser.add_argument("--valid-lines", type=int, default=0,
                        help="keep only the first N lines of the validation split (0 = all)")
    parser.add_argument("--test-lines", type=int, default=0,
                        help="keep only the first N lines of the test split (0 = all; tests only)")
    args = parser.parse_args()
    for option in ("train_lines", "valid_lines", "test_lines"):
        if getattr(args, option) < 0:
            parser.error(f"--{option.replace('_', '-')} must be >= 0")

    source = fetch_wikitext2()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_dictionary(source / "wiki.train.tokens", out / "dict.txt")
    for split in SPLITS:
        limit = getattr(args, f"{split}_lines")
        with open(source / f"wiki.{split}.tokens", encoding="utf-8") as f:
            lines = f.readlines()
        kept = lines[:limit] if limit else lines
        (out / f"{split}.tokens").write_text("".join(kept), encoding="utf-8")
        tokens = sum(len(line.split()) for line in kept)
        print(f"[prepare] {split}: {len(kept)} lines, {tokens} tokens")
    print(f"[prepare] dictionary: {vocab} types besides <unk> (counted on the full training split)")


if __name__ == "__main__":
    main()
