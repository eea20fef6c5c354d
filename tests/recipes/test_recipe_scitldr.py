"""Summarization recipes: the shared ROUGE scorer against rouge-score / hand counts, the CNN/DM story
parser, and recipes/summarization/scitldr end to end on a slice of SciTLDR-A (SETTING=tiny)."""
import json
import math
import os
import subprocess
import sys

import pytest

from helpers import BIN, REPO
from recipes.summarization.rouge import corpus_rouge, main as rouge_main

SUMMARIZATION = REPO / "recipes" / "summarization"


def test_rouge1_matches_a_hand_count():
    # hyp: the cat sat on the mat / ref: the cat sat on a mat -> 5 clipped unigram matches of 6
    scores = corpus_rouge(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert scores["rouge1"] == pytest.approx(100 * 5 / 6)
    # bigrams: hyp {the cat, cat sat, sat on, on the, the mat}, ref {.., on a, a mat}: 3 of 5
    assert scores["rouge2"] == pytest.approx(100 * 3 / 5)
    assert scores["count"] == 1


def test_multi_reference_keeps_the_best_rouge1_reference_for_all_metrics():
    from rouge_score import rouge_scorer

    hyp = "we propose a new method for training deep networks with dropout"
    refs = ["a regularizer that makes dropout models consistent",
            "we propose a simple method to train networks with dropout",
            "deep networks are trained"]
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per_ref = [direct.score(ref, hyp) for ref in refs]
    best = max(per_ref, key=lambda s: s["rouge1"].fmeasure)
    assert best is per_ref[1]

    ours = corpus_rouge([hyp, hyp], [refs, refs[:1]])
    single = per_ref[0]
    for name in ("rouge1", "rouge2", "rougeL"):
        expected = 100 * (best[name].fmeasure + single[name].fmeasure) / 2
        assert ours[name] == pytest.approx(expected)
    assert ours["count"] == 2


def test_summary_level_rouge_l_splits_sentences():
    from rouge_score import rouge_scorer

    hyp, ref = "the cat sat. it was happy.", "a dog ran. the cat sat down. it was happy."
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    expected = scorer.score("a dog ran.\nthe cat sat down.\nit was happy.",
                            "the cat sat.\nit was happy.")["rougeLsum"].fmeasure
    assert corpus_rouge([hyp], [[ref]], summary_level=True)["rougeL"] == pytest.approx(100 * expected)


def test_rouge_cli_names_the_file_whose_length_mismatches(tmp_path, capsys):
    (tmp_path / "hyp").write_text("a b\nc d\n")
    (tmp_path / "ref").write_text("a b\n")
    with pytest.raises(SystemExit):
        rouge_main(["--hyp", str(tmp_path / "hyp"), "--ref", str(tmp_path / "ref")])
    assert f"--ref {tmp_path / 'ref'} has 1 lines but --hyp" in capsys.readouterr().err


def test_cnndm_story_parser_splits_article_and_highlights():
    from recipes.summarization.cnndm.prepare import parse_story

    story = ("(CNN) -- A first line.\n\nA second line without a stop\n\n"
             "@highlight\n\nFirst highlight\n\n@highlight\n\nSecond highlight!\n")
    article, summary = parse_story(story)
    assert article == "(CNN) -- A first line. A second line without a stop ."
    assert summary == "First highlight . Second highlight!"


def test_tiny_run_generates_every_test_tldr_and_scores_it(shared_data, tmp_path):
    from rouge_score import rouge_scorer

    work, png = tmp_path / "work", tmp_path / "curves.png"
    env = dict(os.environ, RDROP_DATA_DIR=str(shared_data), SETTING="tiny", WORK=str(work),
               PLOT=str(png), PYTHON=sys.executable, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(SUMMARIZATION / "scitldr" / "run.sh")], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout[-4000:]

    refs = [json.loads(line) for line in (work / "data" / "raw" / "test.refs.jsonl").open()]
    assert len(refs) == 12 and sum(map(len, refs)) > 12  # several TLDRs per test paper
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name in ("baseline", "rdrop"):
        hyps = (work / name / "test.hypo").read_text().splitlines()
        assert len(hyps) == len(refs)  # one hypothesis per test record, none dropped
        scores = json.loads((work / name / "test_rouge.json").read_text())
        assert scores["count"] == len(refs)
        # recompute the corpus scores from the files with rouge-score itself
        best = [max((direct.score(r, h) for r in rs), key=lambda s: s["rouge1"].fmeasure)
                for h, rs in zip(hyps, refs)]
        for metric in ("rouge1", "rouge2", "rougeL"):
            assert 0 <= scores[metric] <= 100 and math.isfinite(scores[metric])
            expected = 100 * sum(s[metric].fmeasure for s in best) / len(best)
            assert scores[metric] == pytest.approx(expected)
        assert f"[test] {name}: ROUGE-1" in proc.stdout
    rdrop_log = (work / "rdrop" / "train.log").read_text()
    assert '"train_rdrop_kl_loss"' in rdrop_log and "'rdrop_passes': 2" in rdrop_log
    assert "rdrop_kl_loss" not in (work / "baseline" / "train.log").read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
