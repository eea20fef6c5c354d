"""recipes/common/bleu.py against fairseq-score / perl / raw references, and checkpoint averaging."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import data_path
from recipes.common import average_checkpoints as avg
from recipes.common import bleu
from recipes.common import moses

DATA = data_path()
IWSLT_TMP = DATA / "iwslt14" / "iwslt14.tokenized.de-en" / "tmp"
needs_iwslt = pytest.mark.skipif(not IWSLT_TMP.is_dir(), reason=f"IWSLT14 data not found under {DATA}")
COMPOUND_PERL = r"s{(\S)-(\S)}{$1 ##AT##-##AT## $2}g"  # the one-liner of scripts/compound_split_bleu.sh


def _lines(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _pseudo_system(refs, sources):
    """A deterministic 'system output' from real text: some lines damaged, some replaced by the German
    source (low overlap), one emptied (fairseq-score's empty-line rule), the rest left as they are."""
    hyps = []
    for i, (ref, src) in enumerate(zip(refs, sources)):
        words = ref.split()
        if i == 7:
            hyps.append("")
        elif i % 4 == 0:
            hyps.append(src)
        elif i % 4 == 1:
            hyps.append(" ".join(words[1:]))
        elif i % 4 == 2:
            hyps.append(" ".join(reversed(words)))
        else:
            hyps.append(ref)
    return hyps


@needs_iwslt
def test_compound_split_tokenized_bleu_equals_fairseq_score(tmp_path):
    refs = _lines(IWSLT_TMP / "IWSLT14.TED.tst2010.de-en.en")
    hyps = _pseudo_system(refs, _lines(IWSLT_TMP / "IWSLT14.TED.tst2010.de-en.de"))
    (tmp_path / "hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (tmp_path / "ref").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    ours = bleu.tokenized_bleu(tmp_path / "hyp", tmp_path / "ref", compound_split=True)

    # the reference: compound_split_bleu.sh's own steps, fairseq-score on our split files
    for name in ("hyp", "ref"):
        split = [bleu.split_compounds(line) for line in _lines(tmp_path / name)]
        (tmp_path / f"{name}.cs").write_text("".join(s + "\n" for s in split), encoding="utf-8")
    score_cli = Path(sys.executable).parent / "fairseq-score"
    out = subprocess.run(
        [str(score_cli), "--sys", str(tmp_path / "hyp.cs"), "--ref", str(tmp_path / "ref.cs")],
        capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout.strip().split("\n")[-1]
    assert out == ours.summary, (out, ours.summary)
    assert 20 < ours.score < 80  # a real mix of matches and misses, not a degenerate 0 or 100
    # fairseq's hash collisions can only add spurious n-gram matches: the exact count is never above
    exact = bleu.tokenized_bleu(tmp_path / "hyp", tmp_path / "ref", compound_split=True, exact_fairseq=False)
    assert ours.score - 0.2 < exact.score <= ours.score
    assert "##AT##-##AT##" in (tmp_path / "ref.cs").read_text(encoding="utf-8")


@needs_iwslt
@pytest.mark.skipif(shutil.which("perl") is None, reason="perl not installed")
def test_compound_split_matches_the_perl_one_liner_on_real_text(tmp_path):
    text = (IWSLT_TMP / "test.de").read_text(encoding="utf-8") + (IWSLT_TMP / "test.en").read_text(encoding="utf-8")
    (tmp_path / "in").write_text(text, encoding="utf-8")
    perl = subprocess.run(["perl", "-ple", COMPOUND_PERL, str(tmp_path / "in")], capture_output=True, check=True)
    ours = "".join(bleu.split_compounds(line) + "\n" for line in text.split("\n")[:-1])
    assert ours.encode("utf-8") == perl.stdout


def test_compound_split_works_on_bytes_like_perl():
    # perl without -CS matches byte-wise: the second hyphen after a multi-byte 'ä' is split too.
    assert bleu.split_compounds("a-ä-b x-y-z") == "a ##AT##-##AT## ä ##AT##-##AT## b x ##AT##-##AT## y-z"


@needs_iwslt
def test_detokenized_sacrebleu_recovers_the_raw_references():
    """Detokenizing the tokenized references gets back (almost exactly) the raw xml segments."""
    tokenized = _lines(IWSLT_TMP / "IWSLT14.TED.tst2010.de-en.en")
    xml = DATA / "iwslt14" / "orig_de-en" / "IWSLT14.TED.tst2010.de-en.en.xml"
    raw = [moses.lowercase(s) for s in moses.extract_xml_segments(xml, straight_apostrophes=False)]
    score, signature = bleu.sacrebleu_score(bleu.detokenize(tokenized, "en"), raw)
    assert 99.5 < score <= 100.0
    assert "tok:13a" in signature and "nrefs:1" in signature
    score_tok, _ = bleu.sacrebleu_score(tokenized, raw)  # not detokenizing costs points
    assert score_tok < score - 1


def test_read_generate_output_orders_by_id_and_takes_the_right_fields(tmp_path):
    gen = tmp_path / "gen.txt"
    gen.write_text(
        "S-1\tzwei\nT-1\ttwo refs\nH-1\t-0.5\ttwo hyp\nD-1\t-0.5\ttwo hyp\nP-1\t-0.1 -0.2\n"
        "S-0\teins\nT-0\tone ref\nH-0\t-0.3\tone hyp\nD-0\t-0.3\tone hyp\n"
        "Generate test with beam=5: BLEU4 = 1.00\n",
        encoding="utf-8",
    )
    ids, hyps, refs = bleu.read_generate_output(gen)
    assert ids == [0, 1] and hyps == ["one hyp", "two hyp"] and refs == ["one ref", "two refs"]


# ------------------------------------------------------------------------- checkpoint averaging


def _state(seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return {
        "encoder.w": torch.randn(3, 4, generator=gen).to(dtype),
        "decoder.b": torch.randn(5, generator=gen).to(dtype),
        "encoder.version": torch.tensor([3]),
    }


def test_average_is_the_elementwise_mean():
    states = [_state(1), _state(2), _state(3)]
    mean = avg.average_state_dicts(states)
    for key in ("encoder.w", "decoder.b"):
        expected = (states[0][key] + states[1][key] + states[2][key]) / 3
        torch.testing.assert_close(mean[key], expected, rtol=0, atol=1e-6)
    assert torch.equal(mean["encoder.version"], torch.tensor([3]))
    half = avg.average_state_dicts([_state(1, torch.float16), _state(2, torch.float16)])
    assert half["encoder.w"].dtype == torch.float16


def test_average_refuses_checkpoints_of_different_models():
    other = _state(2)
    other["extra.w"] = torch.zeros(1)
    with pytest.raises(KeyError, match="different parameters"):
        avg.average_state_dicts([_state(1), other])


def test_cli_averages_the_last_epochs_and_the_output_loads(tmp_path):
    for epoch in (1, 2, 3, 10):
        torch.save({"model": _state(epoch), "extra_state": {"epoch": epoch}}, tmp_path / f"checkpoint{epoch}.pt")
    torch.save({"model": _state(99)}, tmp_path / "checkpoint_best.pt")  # must be ignored
    out = tmp_path / "avg.pt"
    avg.main(["--inputs", str(tmp_path), "--num-epoch-checkpoints", "2", "--output", str(out)])
    loaded = torch.load(out, map_location="cpu", weights_only=False)
    expected = (_state(10)["encoder.w"] + _state(3)["encoder.w"]) / 2  # epochs 10 and 3, numerically
    torch.testing.assert_close(loaded["model"]["encoder.w"], expected, rtol=0, atol=1e-6)
    assert loaded["extra_state"] == {"epoch": 10}  # everything else comes from the newest checkpoint
    with pytest.raises(FileNotFoundError, match="need 5"):
        avg.main(["--inputs", str(tmp_path), "--num-epoch-checkpoints", "5", "--output", str(out)])
