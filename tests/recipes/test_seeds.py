"""recipes/common/seeds.py: the paired gain over seeds and its verdict, against numpy's statistics."""
import numpy as np
import pytest

from recipes.common.seeds import describe_gain, mean_std, paired_gain


def test_mean_std_is_the_sample_standard_deviation():
    values = [36.5, 34.1, 35.2, 37.9]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert mean_std([3.0]) == (3.0, 0.0)


def test_paired_gain_and_its_verdict():
    base, method = [10.0, 11.0, 12.0], [12.0, 13.0, 14.5]
    gain = paired_gain(base, method)
    diffs = np.subtract(method, base)
    assert gain["gains"] == pytest.approx(diffs.tolist())
    assert gain["mean"] == pytest.approx(diffs.mean()) and gain["std"] == pytest.approx(diffs.std(ddof=1))
    assert gain["spread"] == pytest.approx(max(np.std(base, ddof=1), np.std(method, ddof=1)))
    assert gain["exceeds"]  # every seed gains 2 or more; the larger run spread is 1.26
    line = describe_gain(gain, "BLEU")
    assert line.startswith("per seed: +2.00, +2.00, +2.50 BLEU; mean +2.17 ± 0.29") and "exceeds the seed" in line

    # a seed that loses, a mean gain inside the spread, one seed, a lower-is-better metric
    assert not paired_gain([10.0, 13.0], [12.0, 12.5])["exceeds"]
    assert not paired_gain([10.0, 14.0, 12.0], [10.5, 14.5, 12.5])["exceeds"]  # +0.5 each, spread 2.0
    assert not paired_gain([10.0], [15.0])["exceeds"]
    loss = paired_gain([5.0, 5.2, 5.1], [4.0, 4.1, 4.2], higher_is_better=False)
    assert loss["gains"] == pytest.approx([1.0, 1.1, 0.9]) and loss["exceeds"]
    with pytest.raises(ValueError, match="one value per seed"):
        paired_gain([1.0, 2.0], [1.0])


def test_classification_pairs_every_run_with_the_baseline_by_seed():
    from recipes.classification import run
    row = lambda name, values: dict(run=name, seeds=[dict(seed=s, best={"valid_mcc": v})  # noqa: E731
                                                     for s, v in zip((1, 2, 3), values)])
    rows = [row("baseline", [34.0, 35.0, 36.0]), row("rdrop", [36.0, 36.5, 38.0]), row("childtuning_d", [33.0, 36.0, 35.0])]
    gains = run.paired_gains(rows, "valid_mcc")
    assert list(gains) == ["rdrop", "childtuning_d"]
    assert gains["rdrop"]["gains"] == pytest.approx([2.0, 1.5, 2.0]) and gains["rdrop"]["exceeds"]
    assert not gains["childtuning_d"]["exceeds"]
    text = run.format_gains(gains, "valid_mcc")
    assert text.splitlines()[0].startswith("rdrop - baseline (best mcc) per seed: +2.00, +1.50, +2.00 mcc")
    assert run.paired_gains(rows[:1] + [row("rdrop", [1.0, 2.0, 3.0])], "valid_mcc")  # baseline present
    assert run.paired_gains([dict(run="baseline", seeds=rows[0]["seeds"][:1])], "valid_mcc") == {}
