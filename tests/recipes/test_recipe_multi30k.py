"""The Multi30k quickstart end to end on a slice of the real corpus (the recipe's "tiny" setting):
extract -> sentencepiece -> fairseq-preprocess -> baseline and R-Drop training with the plugin ->
beam search on test -> sacreBLEU -> table and plot; then a rerun that resumes with nothing to redo."""

import json
import math
import sys

import pytest


def test_tiny_pipeline_trains_both_runs_generates_and_scores(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    from recipes.translation.multi30k import run
    cfg = run.SETTINGS["tiny"]
    plot = tmp_path / "curves.png"
    args = ["--setting", "tiny", "--workdir", str(tmp_path / "w"), "--plot", str(plot), "--seeds", "1,2",
            "--max-epoch", "3", "--average-last", "2"]
    per_seed = run.main(args)
    printed = capsys.readouterr().out

    work = tmp_path / "w"
    n_test = cfg["max_lines"]["test"]
    assert len((work / "raw" / "test.en").read_text(encoding="utf-8").splitlines()) == n_test
    assert (work / "spm.model").stat().st_size > 0
    for name in ("train.de-en.de.bin", "valid.de-en.en.idx", "test.de-en.de.bin", "dict.en.txt"):
        assert (work / "data-bin" / name).stat().st_size > 0
    # The dictionary is joined: source and target dictionaries are the same file content.
    assert (work / "data-bin" / "dict.de.txt").read_text() == (work / "data-bin" / "dict.en.txt").read_text()

    assert sorted(per_seed) == [1, 2]
    for seed, rows in per_seed.items():
        assert [r["run"] for r in rows] == ["baseline", "baseline (avg last 2)", "rdrop", "rdrop (avg last 2)"]
        for row in rows:
            out = work / "runs" / f"seed{seed}" / row["run"].split()[0]
            assert (out / "checkpoint_best.pt").stat().st_size > 0
            # --average-last 2 kept the last two epoch checkpoints and averaged them
            assert sorted(p.name for p in out.glob("checkpoint[0-9]*.pt")) == ["checkpoint2.pt", "checkpoint3.pt"]
            assert (out / "checkpoint_avg2.pt").stat().st_size > 0
            for hyp_file in ("test.hyp", "test.avg2.hyp"):
                hyps = (out / hyp_file).read_text(encoding="utf-8").splitlines()
                assert len(hyps) == n_test
                assert not any("▁" in h for h in hyps)  # sentencepiece was undone before scoring
            assert math.isfinite(row["bleu"]) and 0.0 <= row["bleu"] <= 100.0
            assert math.isfinite(row["best_valid_loss"]) and row["epochs"] == 3

    # The seeds differ (different dropout masks and init), so their models do.
    s1, s2 = (work / "runs" / f"seed{s}" / "rdrop" / "train.log" for s in (1, 2))
    assert "--seed 1 " in s1.read_text().splitlines()[0] and "--seed 2 " in s2.read_text().splitlines()[0]

    baseline_log = (work / "runs" / "seed1" / "baseline" / "train.log").read_text()
    rdrop_log = s1.read_text()
    # R-Drop ran through the plugin's criterion (its own options in the config) with the KL term;
    # the baseline ran plain label smoothing with otherwise identical settings.
    assert "'rdrop_passes': 2" in rdrop_log and "rdrop_kl_loss" in rdrop_log and "rdrop_objective" in rdrop_log
    assert "rdrop_kl_loss" not in baseline_log
    assert baseline_log.splitlines()[0].replace("label_smoothed_cross_entropy", "X") == (
        rdrop_log.splitlines()[0]
        .replace(f" --rdrop-alpha {cfg['rdrop_alpha']}", "")
        .replace("label_smoothed_cross_entropy_with_rdrop", "X")
        .replace("/seed1/rdrop ", "/seed1/baseline ")
    )

    assert "| baseline |" in printed and "| rdrop |" in printed
    assert "sacreBLEU signature: nrefs:1|" in printed and "tok:13a" in printed
    # the seed table: mean ± std per run and the per-seed gains
    assert "| rdrop | 2 |" in printed and "±" in printed and "R-Drop - baseline per seed:" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning resumes: every stage is already done, nothing is retrained, the numbers are the same.
    again = run.main(args)
    printed = capsys.readouterr().out
    for stage in ("extract", "spm", "encode", "binarize", "train-baseline-seed1", "train-rdrop-seed2",
                  "generate-rdrop-seed1", "generate-avg2-baseline-seed2"):
        assert f"[stage] {stage}: already done" in printed
    assert "fairseq-train" not in printed
    assert again == per_seed

    # Resuming with other settings would silently reuse the old stages: refused, naming --workdir.
    with pytest.raises(SystemExit, match="--workdir"):
        run.main(["--setting", "tiny", "--workdir", str(work), "--max-epoch", "2"])

    # The same two models on another test set (here the first 20 validation pairs, raw text).
    from recipes.translation.multi30k import score
    src, ref = tmp_path / "other.de", tmp_path / "other.en"
    src.write_text("\n".join((work / "raw" / "valid.de").read_text().splitlines()[:20]) + "\n")
    ref.write_text("\n".join((work / "raw" / "valid.en").read_text().splitlines()[:20]) + "\n")
    results = score.main(["--workdir", str(work), "--src", str(src), "--ref", str(ref), "--seed", "2"])
    printed = capsys.readouterr().out
    assert set(results) == {"baseline", "rdrop"} and all(0 <= b <= 100 for b in results.values())
    assert "| other | 20 |" in printed
    hyps = (work / "extra_tests" / "other" / "rdrop.seed2.hyp").read_text().splitlines()
    assert len(hyps) == 20

    # Without references (the blind test sets): each run's translations, nothing scored.
    blind = tmp_path / "blind"
    assert score.main(["--workdir", str(work), "--src", str(src), "--name", "unseen", "--out", str(blind)]) == {}
    for run_name in ("baseline", "rdrop"):
        assert len((blind / run_name / "unseen.hyp").read_text().splitlines()) == 20
    assert not (work / "extra_tests" / "unseen" / "data-bin" / "test.de-en.en.bin").exists()
    with pytest.raises(SystemExit):  # neither references nor an output folder: refused
        score.main(["--workdir", str(work), "--src", str(src)])

    # One run's model alone (the other still training): its score equals the one of both runs;
    # a run whose training has not finished is refused, naming it and --runs.
    alone = score.main(["--workdir", str(work), "--src", str(src), "--ref", str(ref), "--seed", "2",
                        "--runs", "baseline"])
    assert alone == {"baseline": results["baseline"]} and "| baseline BLEU |" in capsys.readouterr().out
    marker = work / "stages" / "train-rdrop-seed2.done"
    marker.rename(marker.with_suffix(".moved"))
    with pytest.raises(SystemExit, match="rdrop of seed 2 .* has not finished training.*--runs"):
        score.main(["--workdir", str(work), "--src", str(src), "--ref", str(ref), "--seed", "2"])
    with pytest.raises(SystemExit):
        score.main(["--workdir", str(work), "--src", str(src), "--ref", str(ref), "--runs", "rdorp"])
    assert "--runs rdorp: choose among baseline, rdrop" in capsys.readouterr().err


def test_full_data_path_on_a_slice(shared_data, tmp_path, monkeypatch, capsys):
    """full29k's path on 300 pairs: tokenised lowercased text, BPE, runs one at a time ended by
    --patience, greedy valid BLEU per epoch, the detokenised scores, valid BLEU, time to quality."""
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    from recipes.translation.multi30k import run
    # full29k-tiny: full29k's protocol on a slice; lr 1e-12 so that the validation loss never
    # improves after epoch 1 and --patience 1 ends both runs at epoch 2 of at most 30
    monkeypatch.setitem(run.SETTINGS, "full29k-tiny", dict(
        run.SETTINGS["full29k-tiny"], max_epoch=30, patience=1, max_tokens=8000, lr=1e-12))
    work = tmp_path / "w"
    # --runs rdrop trains R-Drop alone and stops before the report, which needs both runs
    assert run.main(["--setting", "full29k-tiny", "--workdir", str(work), "--runs", "rdrop"]) is None
    assert "trained rdrop only" in capsys.readouterr().out
    assert (work / "stages" / "train-rdrop-seed1.done").exists() and not (work / "runs" / "seed1" / "baseline").exists()
    # the next call trains the baseline only and reports on both
    per_seed = run.main(["--setting", "full29k-tiny", "--workdir", str(work)])
    printed = capsys.readouterr().out
    assert "[stage] train-rdrop-seed1: already done" in printed

    assert [r["run"] for r in per_seed[1]] == ["baseline", "baseline (avg last 2)", "rdrop", "rdrop (avg last 2)"]
    for row in per_seed[1]:
        assert (row["best_epoch"], row["epochs"], row["stopped_by"]) == (2, 2, "patience")
        assert 0 <= row["detok_cased"] <= row["detok_lc"] <= 100 and 0 <= row["valid_bleu"] <= 100
    base_log, rdrop_log = (work / "runs" / "seed1" / r / "train.log" for r in ("baseline", "rdrop"))
    for log in (base_log, rdrop_log):
        text = log.read_text()
        assert "--eval-tokenized-bleu" in text.splitlines()[0] and '"valid_bleu"' in text
    # one run at a time: the baseline started after R-Drop's last line
    assert rdrop_log.read_text().splitlines()[-1][:19] <= base_log.read_text().splitlines()[1][:19]
    assert "| test BLEU detok. lc | detok. cased | valid BLEU |" in printed and "(patience)" in printed
    assert "tok:none" in printed and "time to quality (seed 1):" in printed
    # the console shows one progress line per epoch, not fairseq's log
    assert "[baseline s1] epoch 2/30 | train " in printed and "train_inner" not in printed
    speed = json.loads((work / "results.json").read_text())["time_to_quality"]
    assert [r["metric"] for r in speed] == ["valid_loss", "valid_bleu"]
    assert len((work / "runs" / "seed1" / "rdrop" / "valid.hyp").read_text().splitlines()) == 30


def test_tokenised_setting_without_sacremoses_stops_at_startup(tmp_path, monkeypatch):
    """full29k's table has detokenised scores: without sacremoses it must stop before preparing
    or training anything, naming the package."""
    from recipes.translation.multi30k import run
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import sacremoses -> ImportError
    work = tmp_path / "w"
    with pytest.raises(SystemExit, match="--setting full29k .* pip install sacremoses"):
        run.main(["--setting", "full29k", "--workdir", str(work)])
    with pytest.raises(SystemExit):  # a run name that does not exist, refused before any stage
        run.main(["--setting", "full29k", "--workdir", str(work), "--runs", "rdorp"])
    assert not (work / "raw").exists() and not (work / "stages").exists()


def test_score_rejects_mismatched_files(tmp_path):
    from recipes.translation.multi30k import score
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    (tmp_path / "a.en").write_text("one\n")
    with pytest.raises(SystemExit, match="--src .* has 2 lines but --ref .* has 1"):
        score.read_pairs(tmp_path / "a.de", tmp_path / "a.en")
    (tmp_path / "a.en").write_text("one\n\n")
    with pytest.raises(SystemExit, match="a.en:2: empty line"):
        score.read_pairs(tmp_path / "a.de", tmp_path / "a.en")


def test_seed_summary_mean_std_and_verdict():
    from recipes.translation.multi30k import run
    rows = lambda b, r: [dict(run="baseline", bleu=b, best_valid_loss=5.0), dict(run="rdrop", bleu=r, best_valid_loss=4.0)]
    text, gains = run.seeds_summary({1: rows(10.0, 12.0), 2: rows(11.0, 13.0), 3: rows(12.0, 14.5)})
    assert gains == [2.0, 2.0, 2.5]
    # statistics.stdev of 10, 11, 12 is 1.0; of 12, 13, 14.5 is 1.258
    assert "| baseline | 3 | 11.00 ± 1.00 | 5.000 ± 0.000 |" in text
    assert "| rdrop | 3 | 13.17 ± 1.26 |" in text
    assert "exceeds the seed spread" in text
    text, _ = run.seeds_summary({1: rows(10.0, 12.0), 2: rows(13.0, 12.5)})
    assert "does NOT exceed" in text


def test_best_epoch_is_the_one_fairseq_keeps_on_a_tie():
    """fairseq's checkpoint_best.pt follows `val <= best` on the logged (3-decimal) loss, so of two
    equal losses the later epoch's checkpoint is kept; the recipe must report (and horizons.py must
    translate with) that epoch, not the first."""
    from recipes.translation.multi30k.pipeline import best_epoch_stats

    stats = [dict(epoch=e, valid_loss=v) for e, v in [(1, 6.5), (2, 6.209), (3, 6.231), (4, 6.209), (5, 6.3)]]
    assert best_epoch_stats(stats)["epoch"] == 4
    assert best_epoch_stats(stats[:3])["epoch"] == 2
    assert best_epoch_stats([dict(epoch=1, valid_loss=7.0), dict(epoch=2, valid_loss=6.9)])["epoch"] == 2
