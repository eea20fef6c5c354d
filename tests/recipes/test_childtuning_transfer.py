"""recipes/childtuning/multi30k_transfer.py end to end on its tiny setting (real Multi30k slices):
one vocabulary for two disjoint slices, a model pre-trained on one that every fine-tuning run on
the other starts from, five configs (one seed: the seeds' mean +- std is test_childtuning's) two at
a time, then a rerun with nothing to redo. About 90 CPU seconds, most of it starting 7 fairseq
processes."""
import json
import math

import pytest

from recipes.childtuning import multi30k_transfer as transfer
from recipes.childtuning import run as sweep


@pytest.mark.slow
def test_tiny_transfer_end_to_end(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    work = tmp_path / "w"
    argv = ["--setting", "tiny", "--seeds", "1", "--workdir", str(work)]
    transfer.main(argv)
    printed = capsys.readouterr().out

    # ONE joined dictionary, built on both slices, in both data-bins
    shared = (work / "dict" / "dict.de.txt").read_text()
    for data_bin in ("pre-bin", "ft-bin"):
        for lang in ("de", "en"):
            assert (work / data_bin / f"dict.{lang}.txt").read_text() == shared
    # the slices are the setting's line ranges and share no sentence pair
    cfg = transfer.SETTINGS["tiny"]
    pairs = {part: list(zip(*((work / "raw" / f"{part}.{lang}").read_text(encoding="utf-8").splitlines()
                             for lang in ("de", "en")))) for part in ("pre", "ft")}
    assert [len(pairs["pre"]), len(pairs["ft"])] == [cfg["pre_lines"][1], cfg["ft_lines"][1] - cfg["pre_lines"][1]]
    assert not set(pairs["pre"]) & set(pairs["ft"])
    assert "loaded 300 examples from: " + str(work / "pre-bin" / "train.de-en.de") in \
        (work / "pretrain" / "train.log").read_text()

    # every run started from the pre-trained model, as did each seed's D mask, on ft-bin
    ckpt = work / "pretrain" / "checkpoint_last.pt"
    logs = [work / "sweep" / c / f"seed{s}" / "train.log" for c in sweep.CONFIGS for s in (1,)]
    masks = [work / "sweep" / "masks" / "seed1.log"]
    for log in logs + masks:
        text = log.read_text()
        assert (f"Fisher of the weights in {ckpt}" if log in masks else f"Loaded checkpoint {ckpt}") in text, log
        assert "loaded 100 examples from: " + str(work / "ft-bin" / "train.de-en.de") in text, log
    results = json.loads((work / "sweep" / "results.json").read_text())
    assert results["metric"] == "loss" and results["reserve_p"] == cfg["reserve_p"]
    assert sorted(results["scores"]) == sorted(sweep.CONFIGS)
    for config, by_seed in results["scores"].items():
        assert sorted(by_seed) == ["1"] and all(math.isfinite(v) for v in by_seed.values()), config
    assert "--rdrop-alpha 1.0" in results["rdrop_criterion"] and "pre-trained model (checkpoint_last" in printed

    # a rerun finds every stage and run done
    transfer.main(argv)
    again = capsys.readouterr().out
    assert again.count("(done before: ") == len(logs) + len(masks) and "already done" in again
    assert json.loads((work / "sweep" / "results.json").read_text())["scores"] == results["scores"]

