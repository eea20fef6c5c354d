"""CNN/DailyMail (non-anonymised, See et al. 2017 splits) -> GPT-2 BPE -> fairseq binaries for BART.

    python recipes/summarization/cnndm/prepare.py --out work/cnndm [--workers 8]

Steps (split/bpe/binarize are skipped on rerun once their ``.done`` marker exists; downloads are
reused while their checksum matches):
  download  cnn_stories.tgz, dailymail_stories.tgz, the three url lists, and GPT-2's encoder.json /
            vocab.bpe and fairseq's dict.txt, each checked against the sha256 in ``FILES``
  split     raw/{train,val,test}.{source,target}: article / highlights as plain cased text, one
            example per line (the layout fairseq's BART README expects)
  bpe       bpe/{split}.{source,target} with fairseq's GPT-2 BPE encoder
  binarize  fairseq-preprocess with dict.txt on both sides -> bin/
  gpt2_bpe/ a copy of encoder.json and vocab.bpe, which decode.sh needs to turn ids back into text

With ``RDROP_DATA_DIR`` set, files are read from ``$RDROP_DATA_DIR/cnndm/`` instead of downloaded
(the project's shared folder has no CNN/DM; the layout is ``cnndm/<file name in FILES>``).
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # repo root, for recipes.common
from recipes.common.data import Stages, atomic_path, resolve  # noqa: E402

ABISEE = "https://raw.githubusercontent.com/abisee/cnn-dailymail/master/url_lists"
# name -> (url, sha256).  Stories and url lists: sha256 as recorded by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/cnn_dailymail.txt; sizes 158,577,824 and 375,893,739 bytes
# for the archives).  The archives are served from a Hugging Face mirror because Google Drive
# needs a confirmation page for large files; the checksum is what proves they are the originals.
# encoder.json / vocab.bpe: sha256 of OpenAI's GPT-2 files (pinned the same way by tiktoken).
FILES = {
    "cnn_stories.tgz": (
        "https://huggingface.co/datasets/ccdv/cnn_dailymail/resolve/main/cnn_stories.tgz",
        "e8fbc0027e54e0a916abd9c969eb35f708ed1467d7ef4e3b17a56739d65cb200"),
    "dailymail_stories.tgz": (
        "https://huggingface.co/datasets/ccdv/cnn_dailymail/resolve/main/dailymail_stories.tgz",
        "ad69010002210b7c406718248ee66e65868b9f6820f163aa966369878d14147e"),
    "all_train.txt": (f"{ABISEE}/all_train.txt",
                      "a5cee49f3a6c862c26ce29308236d2a99625ab6c86a43be22d5206b2790d8029"),
    "all_val.txt": (f"{ABISEE}/all_val.txt",
                    "81887e982b045083409c6ee838aede8ff4b97291605bcfb21bffc456a16991db"),
    "all_test.txt": (f"{ABISEE}/all_test.txt",
                     "c4f5efb5ec2126430a5c156efbd13d0e9c4cb490169e552c38b4a51981a009bd"),
    "encoder.json": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
                     "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    "vocab.bpe": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
                  "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
}
# fairseq's dict.txt has no published checksum; pass --dict-sha256 once you have verified a copy
# (its content is also shipped inside bart.large.tar.gz, which train.sh downloads).
DICT_URL = "https://dl.fbaipublicfiles.com/fairseq/gpt2_bpe/dict.txt"
SPLITS = {"train": "all_train.txt", "val": "all_val.txt", "test": "all_test.txt"}
END_TOKENS = (".", "!", "?", "...", "'", "`", '"', "\u2019", "\u201d", ")")


def story_key(url):
    """Stories are named by the sha1 of their URL (See et al.'s make_datafiles.py)."""
    return hashlib.sha1(url.strip().encode()).hexdigest()


def parse_story(text):
    """(article, highlights) of a .story file; a line ending without punctuation gets a period."""
    article, highlights, next_is_highlight = [], [], False
    for line in (line.strip() for line in text.splitlines()):
        if not line:
            continue
        if line.startswith("@highlight"):
            next_is_highlight = True
            continue
        if not line.endswith(END_TOKENS):
            line += " ."
        (highlights if next_is_highlight else article).append(line)
    return " ".join(article), " ".join(highlights)


def write_splits(paths, raw_dir):
    stories = {}
    for archive in ("cnn_stories.tgz", "dailymail_stories.tgz"):
        with tarfile.open(paths[archive]) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".story"):
                    text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                    stories[Path(member.name).stem] = parse_story(text)
    with atomic_path(raw_dir) as tmp:
        tmp.mkdir(parents=True)
        for split, url_list in SPLITS.items():
            kept = skipped = 0
            with open(paths[url_list], encoding="utf-8") as urls, \
                    open(tmp / f"{split}.source", "w", encoding="utf-8") as src, \
                    open(tmp / f"{split}.target", "w", encoding="utf-8") as tgt:
                for url in urls:
                    article, summary = stories[story_key(url)]
                    if not article:  # 114 stories have no article text; See et al. drop them too
                        skipped += 1
                        continue
                    src.write(article + "\n")
                    tgt.write(summary + "\n")
                    kept += 1
            print(f"[split] {split}: {kept} examples ({skipped} without article text dropped)")


_ENCODER = None


def _init_encoder(encoder_json, vocab_bpe):
    global _ENCODER
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    _ENCODER = get_encoder(encoder_json, vocab_bpe)


def _encode_line(line):
    return " ".join(map(str, _ENCODER.encode(line.strip())))


def bpe_encode(paths, raw_dir, bpe_dir, workers):
    """What fairseq's examples/roberta/multiprocessing_bpe_encoder.py does, with its library encoder."""
    from multiprocessing import Pool

    init_args = (str(paths["encoder.json"]), str(paths["vocab.bpe"]))
    with atomic_path(bpe_dir) as tmp, Pool(workers, _init_encoder, init_args) as pool:
        tmp.mkdir(parents=True)
        for split in SPLITS:
            for side in ("source", "target"):
                with open(raw_dir / f"{split}.{side}", encoding="utf-8") as f, \
                        open(tmp / f"{split}.{side}", "w", encoding="utf-8") as out:
                    for encoded in pool.imap(_encode_line, f, chunksize=256):
                        out.write(encoded + "\n")


def binarize(dict_path, bpe_dir, bin_dir, workers):
    with atomic_path(bin_dir) as tmp:
        subprocess.run(
            ["fairseq-preprocess", "--source-lang", "source", "--target-lang", "target",
             "--trainpref", str(bpe_dir / "train"), "--validpref", str(bpe_dir / "val"),
             "--testpref", str(bpe_dir / "test"), "--destdir", str(tmp), "--workers", str(workers),
             "--srcdict", str(dict_path), "--tgtdict", str(dict_path)],
            check=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="work folder (raw/, bpe/, bin/ and stage markers)")
    parser.add_argument("--workers", type=int, default=8, help="processes for BPE and fairseq-preprocess")
    parser.add_argument("--dict-sha256", default=None,
                        help=f"sha256 that {DICT_URL} must have (required: it has no published one)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if not args.dict_sha256:
        parser.error(f"--dict-sha256 is required: {DICT_URL} has no published checksum; compute "
                     "one on a copy you trust (e.g. the dict.txt inside bart.large.tar.gz)")
    out = Path(args.out)
    stages = Stages(out / "stages")
    paths = {name: resolve(f"cnndm/{name}", url, sha) for name, (url, sha) in FILES.items()}
    paths["dict.txt"] = resolve("cnndm/dict.txt", DICT_URL, args.dict_sha256)
    stages.run("split", write_splits, paths, out / "raw")
    stages.run("bpe", bpe_encode, paths, out / "raw", out / "bpe", args.workers)
    stages.run("binarize", binarize, paths["dict.txt"], out / "bpe", out / "bin", args.workers)
    (out / "gpt2_bpe").mkdir(parents=True, exist_ok=True)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(paths[name], out / "gpt2_bpe" / name)
    print(f"[cnndm] binarised data in {out / 'bin'}; next: bash {Path(__file__).parent / 'train.sh'}")


if __name__ == "__main__":
    main()
