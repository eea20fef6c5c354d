"""SciTLDR-A (abstract -> one-sentence TLDR) as a fairseq translation-format corpus.

Writes to ``--out``:
  raw/{train,valid,test}.{src,tgt}   source = the abstract's sentences joined by spaces; target = the
                                     FIRST TLDR of each record (train/valid/test alike, so fairseq
                                     can binarise every split)
  raw/test.refs.jsonl                every TLDR of each test record (a JSON list per line): the
                                     references for ROUGE, scored best-of-all as SciTLDR does
  spm.model                          a sentencepiece unigram model trained on train src+tgt
  spm/{train,valid,test}.{src,tgt}   the splits as sentencepiece pieces, for fairseq-preprocess
SciTLDR names its validation split ``dev``; it is written as ``valid`` (fairseq's default name).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # repo root, for recipes.common
from recipes.common.data import resolve  # noqa: E402

COMMIT = "5ccad9c00a60ad75c9e04abf7f27d0f53f983b20"  # allenai/scitldr, pinned
URL = f"https://raw.githubusercontent.com/allenai/scitldr/{COMMIT}/SciTLDR-Data/SciTLDR-A/{{}}.jsonl"
SHA256 = {  # ../shared/data/MANIFEST.md
    "train": "b222771d387be585cfdf5ae957b36757138415a352e0a3e3b23f73f87c3b1119",
    "dev": "3191fa98ccc09521332b7a1cd63b1930be4e8df125a235ccd31e40329709525e",
    "test": "fb42dd6cd4f4a1928ae8a01a189456fbfe994a07e938bd49f68653933f6503c9",
}
SPLITS = {"train": "train", "valid": "dev", "test": "test"}  # fairseq name -> SciTLDR name


def one_line(text):
    """Collapse whitespace (incl. newlines inside a TLDR) so that one record stays one line."""
    return " ".join(text.split())


def read_records(path, limit=0):
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            source = one_line(" ".join(record.get("source") or []))
            targets = [one_line(t) for t in record.get("target") or [] if t.strip()]
            if not source or not targets:
                raise ValueError(f"{path}:{number}: record {record.get('paper_id')} lacks source or target")
            records.append((source, targets))
            if limit and len(records) == limit:
                break
    return records


def train_sentencepiece(texts_path, model_prefix, vocab_size):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=str(texts_path), model_prefix=str(model_prefix), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, num_threads=1,
        # fairseq adds its own <s> <pad> </s> <unk>; keep sentencepiece's ids out of the way
        bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary size")
    parser.add_argument("--train-limit", type=int, default=0, help="keep the first N training records (0 = all)")
    parser.add_argument("--eval-limit", type=int, default=0, help="keep the first N valid/test records (0 = all)")
    args = parser.parse_args()
    if args.vocab_size < 100:
        parser.error(f"--vocab-size must be >= 100, got {args.vocab_size}")
    if args.train_limit < 0 or args.eval_limit < 0:
        parser.error("--train-limit and --eval-limit must be >= 0")

    out = Path(args.out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "spm").mkdir(parents=True, exist_ok=True)
    data = {}
    for split, name in SPLITS.items():
        path = resolve(f"scitldr/SciTLDR-A/{name}.jsonl", URL.format(name), SHA256[name])
        data[split] = read_records(path, args.train_limit if split == "train" else args.eval_limit)
        with open(out / "raw" / f"{split}.src", "w", encoding="utf-8") as src, \
                open(out / "raw" / f"{split}.tgt", "w", encoding="utf-8") as tgt:
            for source, targets in data[split]:
                src.write(source + "\n")
                tgt.write(targets[0] + "\n")
        refs = sum(len(t) for _, t in data[split])
        print(f"[prepare] {split}: {len(data[split])} records, {refs} TLDRs ({name}.jsonl)")
    with open(out / "raw" / "test.refs.jsonl", "w", encoding="utf-8") as f:
        for _, targets in data["test"]:
            f.write(json.dumps(targets, ensure_ascii=False) + "\n")

    corpus = out / "raw" / "spm_corpus.txt"
    corpus.write_text("".join(f"{s}\n{t[0]}\n" for s, t in data["train"]), encoding="utf-8")
    train_sentencepiece(corpus, out / "spm", args.vocab_size)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    for split in SPLITS:
        for side in ("src", "tgt"):
            lines = (out / "raw" / f"{split}.{side}").read_text(encoding="utf-8").splitlines()
            pieces = [" ".join(sp.encode(line, out_type=str)) for line in lines]
            (out / "spm" / f"{split}.{side}").write_text("\n".join(pieces) + "\n", encoding="utf-8")
            lengths = sorted(len(p.split()) for p in pieces)
            print(f"[prepare] {split}.{side}: {len(pieces)} lines, median {lengths[len(lengths) // 2]} "
                  f"pieces, max {lengths[-1]}")


if __name__ == "__main__":
    main()
