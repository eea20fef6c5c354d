"""Our Python IWSLT14 preparation against the real output of fairseq's prepare-iwslt14.sh.

The shared data folder holds the WIT3 dev/test xml files and what the perl pipeline made of them
(tokenized + lowercased tmp/ files, and the BPE'd test/valid with the BPE code it learned).  The
training split is not there, so learn-bpe and cleaning are checked on the
stand-in --smoke corpus and against the perl scripts' documented rules.
"""

import pytest

from helpers import data_path
from recipes.common import moses
from recipes.translation.iwslt14 import prepare

DATA = data_path()
IWSLT = DATA / "iwslt14"
FAIRSEQ_OUT = IWSLT / "iwslt14.tokenized.de-en"
pytestmark = pytest.mark.skipif(
    not (IWSLT / "orig_de-en").is_dir(), reason=f"IWSLT14 dev/test data not found under {DATA}"
)


@pytest.fixture(scope="module")
def our_tmp(tmp_path_factory):
    """tmp/ as our recipe writes it from the xml files: the five sets and their concatenation."""
    tmp = tmp_path_factory.mktemp("tmp")
    prepare.tokenize_dev_test(IWSLT / "orig_de-en", tmp)
    for lang in ("de", "en"):
        prepare.concat_test(tmp, lang)
    return tmp


@pytest.mark.parametrize("lang", ["de", "en"])
def test_tokenized_test_set_is_byte_identical_to_fairseq_script(our_tmp, lang):
    names = [f"IWSLT14.{name}.de-en.{lang}" for name in prepare.TEST_SETS] + [f"test.{lang}"]
    for name in names:
        ours, theirs = (our_tmp / name).read_bytes(), (FAIRSEQ_OUT / "tmp" / name).read_bytes()
        if ours != theirs:
            diff = [
                (i, a, b)
                for i, (a, b) in enumerate(zip(ours.decode().split("\n"), theirs.decode().split("\n")))
                if a != b
            ]
            pytest.fail(f"{name}: {len(diff)} lines differ, first: {diff[:3]}")
    assert len((our_tmp / f"test.{lang}").read_text(encoding="utf-8").splitlines()) == 6750


@pytest.mark.parametrize("lang", ["de", "en"])
def test_plain_sacremoses_misses_only_the_last_word_period_rule(our_tmp, lang):
    """Why PerlCompatibleMosesTokenizer exists: without it the only differences are final periods."""
    from sacremoses import MosesTokenizer

    plain_tok = MosesTokenizer(lang=lang)
    expected = prepare.read_lines(FAIRSEQ_OUT / "tmp" / f"test.{lang}")
    segments = [
        seg
        for name in prepare.TEST_SETS
        for seg in moses.extract_xml_segments(IWSLT / "orig_de-en" / f"IWSLT14.{name}.de-en.{lang}.xml")
    ]
    plain = [moses.lowercase(plain_tok.tokenize(s, return_str=True, escape=True)) for s in segments]
    differing = [(p, e) for p, e in zip(plain, expected) if p != e]
    assert differing, "plain sacremoses now matches tokenizer.perl; the subclass may be unnecessary"
    for plain_line, perl_line in differing:
        # tokenizer.perl split the period off the last word ("u.s." -> "u.s ."); sacremoses did not.
        assert plain_line.endswith(".") and perl_line == plain_line[:-1] + " .", (plain_line, perl_line)


@pytest.mark.parametrize("split", ["test", "valid"])
def test_shipped_bpe_code_reproduces_bpe_files(tmp_path, split):
    prepare.apply_bpe_files(FAIRSEQ_OUT / "code", FAIRSEQ_OUT / "tmp", tmp_path, [split])
    for lang in ("de", "en"):
        assert (tmp_path / f"{split}.{lang}").read_bytes() == (FAIRSEQ_OUT / f"{split}.{lang}").read_bytes()


def test_clean_corpus_follows_clean_corpus_n_perl():
    src = [
        "a b c",              # kept
        "  x   y ",           # kept, whitespace normalised as the perl script prints it
        "",                   # empty side: dropped
        "one two three four",  # ratio 4/1 > 1.5: dropped
        "p|q r",              # '|' deleted (first pair has none, so not a factored corpus)
        " ".join(["w"] * 176),  # 176 tokens > 175: dropped
        " ".join(["w"] * 175),  # exactly 175 on both sides: kept
        "ok " + "z" * 1001,   # a word longer than 1000 characters: dropped
        "a b",                # ratio exactly 1.5 (3/2): kept
    ]
    tgt = ["c b a", "y x", "e", "one", "q r", " ".join(["v"] * 176), " ".join(["v"] * 175), "ok z", "a b c"]
    kept_src, kept_tgt = moses.clean_corpus(src, tgt, 1, 175, ratio=1.5)
    assert kept_src == ["a b c", "x y", "pq r", " ".join(["w"] * 175), "a b"]
    assert kept_tgt == ["c b a", "y x", "q r", " ".join(["v"] * 175), "a b c"]


def test_valid_is_every_23rd_line_and_train_the_rest():
    lines = [str(i) for i in range(1, 51)]
    valid, train = moses.every_nth(lines, 23)
    assert valid == ["23", "46"]
    assert len(train) == 48 and "23" not in train and train[:3] == ["1", "2", "3"]


def test_lowercase_is_perl_lc_without_final_sigma():
    assert moses.lowercase("ΟΔΟΣ Straße ÄÖÜ") == "οδοσ straße äöü"


def test_smoke_preparation_runs_every_stage_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RDROP_DATA_DIR", str(DATA))
    data_bin = prepare.prepare(tmp_path, smoke=True, bpe_tokens=300)
    prep = tmp_path / "iwslt14.tokenized.de-en"
    for lang in ("de", "en"):
        train, valid = (prepare.read_lines(prep / "tmp" / f"{s}.{lang}") for s in ("train", "valid"))
        cleaned = prepare.read_lines(prep / "tmp" / f"train.tags.de-en.{lang}")
        assert valid == cleaned[22::23] and len(train) + len(valid) == len(cleaned)
        # the stand-in test set is the real one, so it must equal fairseq's too
        assert (prep / "tmp" / f"test.{lang}").read_bytes() == (FAIRSEQ_OUT / "tmp" / f"test.{lang}").read_bytes()
        assert any("@@" in line for line in prepare.read_lines(prep / f"train.{lang}"))
    codes = prepare.read_lines(prep / "code")
    assert codes[0] == "#version: 0.2" and len(codes) == 301
    assert (data_bin / "train.de-en.de.bin").is_file() and (data_bin / "dict.en.txt").is_file()
    capsys.readouterr()
    prepare.prepare(tmp_path, smoke=True, bpe_tokens=300)
    assert capsys.readouterr().out.count("already done") == 6


def test_split_sizes_are_checked_against_the_published_counts(our_tmp, tmp_path, capsys):
    # the real test set (6750 pairs) passes; a short train/valid pair is named in the warning
    for name in ("train", "valid", "test"):
        lines = prepare.read_lines(our_tmp / "test.de") if name == "test" else ["a"] * 5
        prepare.write_lines(tmp_path / f"{name}.de", lines)
    prepare.check_split_sizes(tmp_path)
    out = capsys.readouterr().out
    assert "train has 5 sentence pairs; prepare-iwslt14.sh gives 160239" in out
    assert "valid has 5 sentence pairs; prepare-iwslt14.sh gives 7283" in out
    assert "test has" not in out
