"""Statistics over seeds: mean ± std, and whether a method's gain over the baseline, paired by seed,
exceeds the spread between seeds."""
import statistics

RULE = "every seed's gain > 0 and mean gain > that std"


def mean_std(values):
    """Mean and sample standard deviation (0 for one value)."""
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_gain(baseline, method, higher_is_better=True):
    """``baseline`` and ``method``: one metric value per seed, in the same seed order. The gain exceeds
    the seed spread when every seed gains and the mean gain is larger than the larger of the two runs'
    standard deviations over seeds (a gain that one run's seed-to-seed noise cannot explain)."""
    if len(baseline) != len(method) or not baseline:
        raise ValueError(f"paired_gain needs one value per seed for both runs, got {len(baseline)} and {len(method)}")
    sign = 1 if higher_is_better else -1
    gains = [sign * (m - b) for b, m in zip(baseline, method)]
    mean, std = mean_std(gains)
    spread = max(mean_std(baseline)[1], mean_std(method)[1])
    exceeds = len(gains) > 1 and all(g > 0 for g in gains) and mean > spread
    return dict(gains=gains, mean=mean, std=std, spread=spread, exceeds=exceeds)


def describe_gain(gain, unit):
    """One line: the per-seed gains, their mean ± std and the verdict against the seed spread."""
    return (f"per seed: {', '.join(f'{g:+.2f}' for g in gain['gains'])} {unit}; mean {gain['mean']:+.2f} ± "
            f"{gain['std']:.2f}; largest seed std of a run {gain['spread']:.2f}: the gain "
            f"{'exceeds' if gain['exceeds'] else 'does NOT exceed'} the seed spread (rule: {RULE})")
