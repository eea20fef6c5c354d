"""BLEU as the translation papers report it, from a fairseq-generate output file.

Two scores, because papers mix them:
  * tokenized BLEU with compound splitting, as fairseq's scripts/compound_split_bleu.sh: hypotheses
    (H lines) and references (T lines) stay Moses-tokenized, every intra-word hyphen "a-b" becomes
    "a ##AT##-##AT## b", and BLEU-4 on whitespace tokens comes from fairseq-score's own scorer (no
    smoothing, brevity penalty exp(1 - r/c) when c < r).  This is what the R-Drop paper reports
    (34.64 / 37.25 on IWSLT14 De->En, 30.91 on WMT14 En->De).  That scorer matches n-grams by a hash
    that collides now and then, so the exact (collision-free) count is printed beside it.
  * detokenized sacreBLEU (13a tokenization, its signature printed with the score), after undoing the
    Moses tokenization of both sides with sacremoses.

Usage: python recipes/common/bleu.py GENERATE_OUTPUT --lang en [--raw-ref FILE]
"""

import argparse
import re
import sys
from dataclasses import dataclass

# compound_split_bleu.sh runs `perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g'` without -CS, so perl
# sees UTF-8 *bytes*: every byte of a non-ASCII character counts as \S, and the match resumes inside
# a multi-byte character ("a-ä-b" splits twice, a character-level regex would split once).  The same
# regex on bytes reproduces that exactly.
_COMPOUND = re.compile(rb"(\S)-(\S)")


def split_compounds(line):
    return _COMPOUND.sub(rb"\1 ##AT##-##AT## \2", line.encode("utf-8")).decode("utf-8")


@dataclass
class BleuResult:
    score: float
    summary: str  # fairseq-score's line, e.g. "BLEU4 = 34.64, 68.1/42.3/28.2/19.6 (BP=1.000, ...)"


def fairseq_tokenized_bleu(hyps, refs):
    """BLEU-4 exactly as ``fairseq-score --sys H --ref R`` prints it, by running its own code path.

    Not a re-implementation on purpose: fairseq's C scorer matches n-grams by a 64-bit hash of their
    token ids that sign-extends bytes, and distinct n-grams collide measurably often (in our test,
    "to read" and "lesen oder" on one line).  Papers report this scorer's numbers, collisions included,
    so reproducing them needs the same code; ``collision_free_tokenized_bleu`` gives the exact count.
    """
    from fairseq.data import dictionary
    from fairseq.scoring import bleu as fairseq_bleu

    _check_lengths(hyps, refs)
    vocab = dictionary.Dictionary()
    scorer = fairseq_bleu.Scorer(
        fairseq_bleu.BleuConfig(pad=vocab.pad(), eos=vocab.eos(), unk=vocab.unk())
    )
    for hyp, ref in zip(hyps, refs):
        # Same order as fairseq_cli/score.py: the token ids (hence the collisions) depend on it.
        hyp_ids = vocab.encode_line(hyp)
        ref_ids = vocab.encode_line(ref)
        scorer.add(ref_ids, hyp_ids)
    return BleuResult(scorer.score(4), scorer.result_string(4))


def collision_free_tokenized_bleu(hyps, refs):
    """The same statistic counted exactly (sacrebleu on whitespace tokens, no smoothing)."""
    import sacrebleu

    _check_lengths(hyps, refs)
    bleu = sacrebleu.BLEU(tokenize="none", smooth_method="none", force=True)
    stats = bleu.corpus_score([_eos_if_empty(h) for h in hyps], [[_eos_if_empty(r) for r in refs]])
    precisions = "/".join(f"{p:.1f}" for p in stats.precisions)
    summary = (
        f"BLEU4 = {stats.score:.2f}, {precisions} (BP={stats.bp:.3f}, ratio={stats.ratio:.3f}, "
        f"syslen={stats.sys_len}, reflen={stats.ref_len})"
    )
    return BleuResult(stats.score, summary)


def _eos_if_empty(line):
    # fairseq-score appends </s> to every line and its C scorer trims trailing </s> only while more
    # than one token is left, so an empty line counts as the one token </s> (which matches an empty
    # reference).  "</s>" cannot occur in Moses-tokenized text: '<' and '>' are escaped there.
    return line if line.strip() else "</s>"


def _check_lengths(hyps, refs):
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


def tokenized_bleu(hyp_file, ref_file, compound_split=True, exact_fairseq=True):
    """BLEU of two tokenized text files, one sentence per line, compound-split first by default:
    ``scripts/compound_split_bleu.sh`` when both flags are on."""
    hyps, refs = _read(hyp_file), _read(ref_file)
    if compound_split:
        hyps = [split_compounds(h) for h in hyps]
        refs = [split_compounds(r) for r in refs]
    scorer = fairseq_tokenized_bleu if exact_fairseq else collision_free_tokenized_bleu
    return scorer(hyps, refs)


def sacrebleu_score(hyps, refs, tokenize="13a", lowercase=False):
    """(score, signature) of hypotheses against one set of references.

    ``tokenize`` "13a" (sacreBLEU's default) for detokenized text; "none" for text that is
    already tokenized the way the references are (e.g. Multi30k's lowercased tokenised files).
    ``lowercase``: case-insensitive (sacreBLEU's ``-lc``).
    """
    import sacrebleu

    _check_lengths(hyps, refs)
    bleu = sacrebleu.BLEU(tokenize=tokenize, lowercase=lowercase)
    result = bleu.corpus_score(hyps, [refs])
    return result.score, str(bleu.get_signature())


def read_generate_output(path):
    """(ids, hyps, refs) from fairseq-generate output, in sample-id order.

    Hypotheses are the last tab field of the H lines (``H-id<TAB>score<TAB>text``), references the
    rest of the T lines after the first tab, as compound_split_bleu.sh's grep/awk/cut take them.
    """
    hyps, refs = {}, {}
    for line in _read(path):
        if line.startswith("H-"):
            key, text = line.split("\t", 1)[0], line.split("\t")[-1]
            hyps[int(key[2:])] = text
        elif line.startswith("T-"):
            key, text = line.split("\t", 1)
            refs[int(key[2:])] = text
    if not hyps:
        raise ValueError(f"{path}: no H- lines; is this fairseq-generate output?")
    if set(hyps) != set(refs):
        raise ValueError(f"{path}: {len(hyps)} hypotheses but {len(refs)} references (unfinished run?)")
    ids = sorted(hyps)
    return ids, [hyps[i] for i in ids], [refs[i] for i in ids]


def detokenize(lines, lang):
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return [detok.detokenize(line.split()) for line in lines]


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("generate_output", help="file written by fairseq-generate (with --remove-bpe)")
    parser.add_argument("--lang", required=True, help="target language, for the Moses detokenizer")
    parser.add_argument("--raw-ref", help="untokenized references, one per sample id in order; "
                        "default: the detokenized T lines")
    args = parser.parse_args(argv)

    ids, hyps, refs = read_generate_output(args.generate_output)
    split_hyps, split_refs = [split_compounds(h) for h in hyps], [split_compounds(r) for r in refs]
    print(f"compound-split tokenized {fairseq_tokenized_bleu(split_hyps, split_refs).summary}  (fairseq-score)")
    print(f"  same, without fairseq's n-gram hash collisions: "
          f"{collision_free_tokenized_bleu(split_hyps, split_refs).summary}")

    detok_hyps = detokenize(hyps, args.lang)
    if args.raw_ref:
        raw = _read(args.raw_ref)
        if len(raw) <= ids[-1]:
            sys.exit(f"--raw-ref {args.raw_ref} has {len(raw)} lines but sample ids reach {ids[-1]}")
        detok_refs = [raw[i] for i in ids]
    else:
        detok_refs = detokenize(refs, args.lang)
    score, signature = sacrebleu_score(detok_hyps, detok_refs)
    print(f"detokenized sacreBLEU = {score:.2f} ({signature})")


if __name__ == "__main__":
    main()
