"""Python equivalents of the Moses perl steps used by fairseq's prepare-iwslt14.sh / prepare-wmt14en2de.sh.

Each function reproduces one perl script or shell filter of those pipelines, with the perl semantics
spelled out where Python differs by default:

  extract_xml_segments   grep '<seg id' | sed (strip <seg ...> / </seg>) | sed "s/’/'/g"
  strip_train_tags       grep -v '<url>|<talkid>|<keywords>' | sed (drop <title>, <description> tags)
  tokenize_lines         tokenizer.perl -l LANG [-a]      (XML-escaping on, as the perl default)
  lowercase              lowercase.perl                   (perl lc, no final-sigma rule)
  clean_corpus           clean-corpus-n.perl -ratio R corpus l1 l2 out MIN MAX
  every_nth              awk '{if (NR%N == 0) print}' / awk '{if (NR%N != 0) print}'
  learn_joint_bpe        cat train.l1 train.l2 > train.l1-l2; subword-nmt learn-bpe -s N
  apply_bpe              subword-nmt apply-bpe -c code
"""

import functools
import re
import shutil

from sacremoses import MosesTokenizer

# Perl's \s on character strings is Python's \s minus the ASCII "information separators" \x1c-\x1f,
# which Python's str.isspace() counts as whitespace and perl does not.
PERL_SPACE = r"[^\S\x1c-\x1f]"
# GNU sed's \s in the shell filters: the scripts run in a byte locale in practice, so ASCII only.
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">[ \t\n\r\f\v]*')
_SEG_CLOSE = re.compile(r"[ \t\n\r\f\v]*</seg>[ \t\n\r\f\v]*")
_BLANK = re.compile(rf"{PERL_SPACE}*")
_SPACE_RUN = re.compile(rf"{PERL_SPACE}+")


class PerlCompatibleMosesTokenizer(MosesTokenizer):
    """sacremoses' port of tokenizer.perl plus the one rule it lacks.

    tokenizer.perl (mosesdecoder since 2017, the version fairseq's scripts clone) always splits the
    final period off the *last* word of a line, "as they are unlikely to be non-breaking prefixes";
    sacremoses 0.x only splits it when the word is not a known prefix, so "... in the u.s." stays
    "u.s." instead of "u.s .".  Without this rule 31 of the 13,500 IWSLT14 test lines differ.
    """

    def handles_nonbreaking_prefixes(self, text):
        tokens = text.split()
        if tokens:
            last = re.fullmatch(r"(\S+)\.", tokens[-1])
            if last:
                tokens[-1] = last.group(1) + " ."
        return super().handles_nonbreaking_prefixes(" ".join(tokens))


def extract_xml_segments(path, straight_apostrophes=True):
    """The text of every ``<seg id="N">`` line of a WIT3/WMT xml or sgm file, as the shell filter does
    (the scripts also turn ’ into ' there; ``straight_apostrophes=False`` keeps the raw text)."""
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    out = []
    for line in lines:
        if "<seg id" not in line:
            continue
        line = _SEG_OPEN.sub("", line)
        line = _SEG_CLOSE.sub("", line)
        out.append(line.replace("\u2019", "'") if straight_apostrophes else line)
    return out


def strip_train_tags(lines):
    """Drop the talk metadata lines of WIT3's train.tags files and unwrap <title>/<description>."""
    out = []
    for line in lines:
        if "<url>" in line or "<talkid>" in line or "<keywords>" in line:
            continue
        for tag in ("<title>", "</title>", "<description>", "</description>"):
            line = line.replace(tag, "")
        out.append(line)
    return out


def tokenize_lines(lines, lang, aggressive_dash_splits=False):
    """tokenizer.perl -l LANG [-a]: blank lines pass through unchanged; everything else is tokenised
    and XML-escaped (& | < > ' " [ ] become entities: the perl default, no -no-escape in the scripts)."""
    tokenizer = _tokenizer(lang)
    out = []
    for line in lines:
        if _BLANK.fullmatch(line):
            out.append(line)
        else:
            out.append(
                tokenizer.tokenize(
                    line, aggressive_dash_splits=aggressive_dash_splits, return_str=True, escape=True
                )
            )
    return out


@functools.lru_cache(maxsize=None)
def _tokenizer(lang):
    return PerlCompatibleMosesTokenizer(lang=lang)  # loading its prefix lists is worth doing once


def lowercase(line):
    """lowercase.perl (perl ``lc``): Python's str.lower() would also turn a word-final 'Σ' into 'ς'
    (Unicode's Final_Sigma context rule), which perl does not; lowering character by character does not."""
    if "\u03a3" in line:
        return "".join(ch.lower() for ch in line)
    return line.lower()


def clean_corpus(src_lines, tgt_lines, min_len=1, max_len=175, ratio=1.5, max_word_length=1000):
    """clean-corpus-n.perl on two lists of lines; returns (kept_src, kept_tgt). See ``clean_pairs``."""
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"clean_corpus: the two sides differ in length ({len(src_lines)} vs {len(tgt_lines)} lines)"
        )
    kept = list(clean_pairs(zip(src_lines, tgt_lines), min_len, max_len, ratio, max_word_length))
    return [s for s, _ in kept], [t for _, t in kept]


def clean_pairs(pairs, min_len=1, max_len=175, ratio=1.5, max_word_length=1000):
    """clean-corpus-n.perl: yield the (src, tgt) pairs whose both sides have min..max tokens, a length
    ratio of at most ``ratio`` either way, and no token longer than ``max_word_length`` characters.

    As in the perl script, whitespace is normalised on the kept lines, and '|' is deleted unless the
    first line pair contains one (the script then treats the corpus as factored and keeps them; its
    blank-factor check is left out: Moses-escaped text never holds a raw '|').
    """
    too_long_word = re.compile(rf"[^\s|]{{{max_word_length + 1}}}")
    factored = None
    for src, tgt in pairs:
        if factored is None:
            factored = "|" in src or "|" in tgt
        src, tgt = (_normalise_space(side, factored) for side in (src, tgt))
        if not src or not tgt:
            continue
        n_src, n_tgt = len(src.split(" ")), len(tgt.split(" "))
        if n_src > max_len or n_tgt > max_len or n_src < min_len or n_tgt < min_len:
            continue
        if n_tgt / n_src > ratio or n_src / n_tgt > ratio:
            continue
        if too_long_word.search(src) or too_long_word.search(tgt):
            continue
        yield src, tgt


def _normalise_space(line, factored):
    if not factored:
        line = line.replace("|", "")
    line = _SPACE_RUN.sub(" ", line)
    # perl's s/^ // and s/ $// remove one space each; after the collapse above one is all there can be.
    if line.startswith(" "):
        line = line[1:]
    if line.endswith(" "):
        line = line[:-1]
    return line


def every_nth(lines, n):
    """(lines whose 1-based number is a multiple of n, all the other lines): the scripts' valid/train split."""
    picked = [line for i, line in enumerate(lines, start=1) if i % n == 0]
    rest = [line for i, line in enumerate(lines, start=1) if i % n != 0]
    return picked, rest


def learn_joint_bpe(train_files, concat_path, codes_path, num_symbols, workers=1):
    """cat train_files > concat_path; subword-nmt learn-bpe -s N < concat_path > codes_path."""
    from subword_nmt.learn_bpe import learn_bpe

    with open(concat_path, "wb") as out:
        for path in train_files:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out)
    # learn_bpe needs a named file (not a stream) to count the vocabulary with several workers.
    with open(concat_path, encoding="utf-8") as corpus, open(codes_path, "w", encoding="utf-8") as out:
        # min_frequency=2 is subword-nmt's command-line default, which the scripts use.
        learn_bpe(corpus, out, num_symbols, min_frequency=2, num_workers=workers)


def apply_bpe(codes_path, lines):
    """subword-nmt apply-bpe -c code (separator '@@', no vocabulary filter, no glossaries)."""
    from subword_nmt.apply_bpe import BPE

    with open(codes_path, encoding="utf-8") as codes:
        bpe = BPE(codes)
    return [bpe.process_line(line) for line in lines]
