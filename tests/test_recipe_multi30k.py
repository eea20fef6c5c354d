"""The Multi30k quickstart end to end on a slice of the real corpus (the recipe's "tiny" setting):
extract -> sentencepiece -> fairseq-preprocess -> baseline and R-Drop training with the plugin ->
beam search on test -> sacreBLEU -> table and plot; then a rerun that resumes with nothing to redo."""

import importlib.util
import math
import sys

import pytest

from conftest import REPO

RECIPE = REPO / "recipes" / "translation" / "multi30k"


def _load_run_module():
    sys.path.insert(0, str(RECIPE))
    spec = importlib.util.spec_from_file_location("multi30k_run", RECIPE / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_pipeline_trains_both_runs_generates_and_scores(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    run = _load_run_module()
    cfg = run.SETTINGS["tiny"]
    plot = tmp_path / "curves.png"
    rows = run.main(["--setting", "tiny", "--workdir", str(tmp_path / "w"), "--plot", str(plot)])
    printed = capsys.readouterr().out

    work = tmp_path / "w"
    n_test = cfg["max_lines"]["test"]
    assert len((work / "raw" / "test.en").read_text(encoding="utf-8").splitlines()) == n_test
    assert (work / "spm.model").stat().st_size > 0
    for name in ("train.de-en.de.bin", "valid.de-en.en.idx", "test.de-en.de.bin", "dict.en.txt"):
        assert (work / "data-bin" / name).stat().st_size > 0
    # The dictionary is joined: source and target dictionaries are the same file content.
    assert (work / "data-bin" / "dict.de.txt").read_text() == (work / "data-bin" / "dict.en.txt").read_text()

    for row in rows:
        out = work / "runs" / row["run"]
        assert (out / "checkpoint_best.pt").stat().st_size > 0
        hyps = (out / "test.hyp").read_text(encoding="utf-8").splitlines()
        assert len(hyps) == n_test
        assert not any("▁" in h for h in hyps)  # sentencepiece was undone before scoring
        assert math.isfinite(row["bleu"]) and 0.0 <= row["bleu"] <= 100.0
        assert math.isfinite(row["best_valid_loss"])

    baseline_log = (work / "runs" / "baseline" / "train.log").read_text()
    rdrop_log = (work / "runs" / "rdrop" / "train.log").read_text()
    # R-Drop ran through the plugin's criterion (its own options in the config) with the KL term;
    # the baseline ran plain label smoothing with otherwise identical settings.
    assert "'rdrop_passes': 2" in rdrop_log and "rdrop_kl_loss" in rdrop_log
    assert "rdrop_kl_loss" not in baseline_log
    assert baseline_log.splitlines()[0].replace("label_smoothed_cross_entropy", "X") == (
        rdrop_log.splitlines()[0]
        .replace(f" --rdrop-alpha {cfg['rdrop_alpha']}", "")
        .replace("label_smoothed_cross_entropy_with_rdrop", "X")
        .replace("/runs/rdrop", "/runs/baseline")
    )

    assert "| baseline |" in printed and "| rdrop |" in printed
    assert "sacreBLEU signature: nrefs:1|" in printed and "tok:13a" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning resumes: every stage is already done, nothing is retrained, the numbers are the same.
    again = run.main(["--setting", "tiny", "--workdir", str(work), "--plot", str(plot)])
    printed = capsys.readouterr().out
    for stage in ("extract", "spm", "encode", "binarize", "train-baseline", "train-rdrop", "generate-rdrop"):
        assert f"[stage] {stage}: already done" in printed
    assert "fairseq-train" not in printed
    assert [r["bleu"] for r in again] == [r["bleu"] for r in rows]

    # Resuming with other settings would silently reuse the old stages: refused, naming --workdir.
    with pytest.raises(SystemExit, match="--workdir"):
        run.main(["--setting", "tiny", "--workdir", str(work), "--max-epoch", "2"])
