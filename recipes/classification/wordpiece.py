"""BERT's uncased tokenisation, written plainly: the basic tokenizer, then greedy longest-match-first
WordPiece over a ``vocab.txt``. What the converted BERT encoders (convert_bert.py) were pre-trained
on, so the recipe prepares every input with it before binarizing.

Basic tokenizer (BERT's ``tokenization.BasicTokenizer`` with ``do_lower_case``): drop NUL, U+FFFD
and control characters, turn every whitespace character into a space, put spaces around CJK
ideographs, lowercase, strip accents (NFD, then drop the combining marks), and split off every
punctuation character (ASCII non-alphanumeric symbols and Unicode category P*) as its own token.
WordPiece: each such word, read left to right, is cut into the longest prefix found in the
vocabulary, then the longest ``##``-prefixed continuation, and so on; a word with a piece that
is not in the vocabulary, or longer than 100 characters, becomes ``[UNK]`` as a whole.

Special tokens written in the text (``[SEP]``) are not special here: they are split like any text.
"""
import unicodedata

UNK = "[UNK]"
MAX_WORD_CHARS = 100  # BERT's max_input_chars_per_word

# CJK Unified Ideographs and their extensions and compatibility blocks, as BERT lists them
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def read_vocab(path):
    """The pieces of a BERT vocab.txt, one a line, in id order (line n is id n)."""
    with open(path, encoding="utf-8") as f:
        pieces = [line.rstrip("\n") for line in f]
    if pieces and pieces[-1] == "":
        pieces.pop()
    seen = {}
    for number, piece in enumerate(pieces, 1):
        if not piece or piece != piece.strip() or len(piece.split()) != 1:
            raise ValueError(f"{path}:{number}: a vocabulary entry must be one token without spaces, got {piece!r}")
        if piece in seen:
            raise ValueError(f"{path}:{number}: {piece!r} repeats line {seen[piece]}")
        seen[piece] = number
    return pieces


def _is_whitespace(char):
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char):
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char):
    cp = ord(char)
    # every ASCII non-letter non-digit symbol counts ("$", "^", "`"), though Unicode does not class them all as P*
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(char):
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _CJK)


def basic_tokenize(text):
    """Lowercased, accent-stripped words and punctuation marks of ``text`` (a list of strings)."""
    chars = []
    for char in text:
        if char in ("\x00", "\ufffd") or _is_control(char):
            continue
        if _is_whitespace(char):
            chars.append(" ")
        elif _is_cjk(char):
            chars.extend((" ", char, " "))
        else:
            chars.append(char)
    words = []
    for token in "".join(chars).split():
        token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        word = ""
        for char in token:
            if _is_punctuation(char):
                if word:
                    words.append(word)
                words.append(char)
                word = ""
            else:
                word += char
        if word:
            words.append(word)
    return words


class WordPiece:
    """``WordPiece(pieces)(text)`` -> the list of pieces BERT's uncased tokenizer makes of ``text``."""

    def __init__(self, pieces):
        self.vocab = set(pieces)
        if UNK not in self.vocab:
            raise ValueError(f"the vocabulary has no {UNK}")

    def split_word(self, word):
        if len(word) > MAX_WORD_CHARS:
            return [UNK]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            else:  # no prefix of the rest is a piece: the whole word is unknown
                return [UNK]
            pieces.append(piece)
            start = end
        return pieces

    def __call__(self, text):
        return [piece for word in basic_tokenize(text) for piece in self.split_word(word)]
