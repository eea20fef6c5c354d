"""Time to quality: how soon R-Drop reaches the baseline's best, from the two runs' training logs.

    python recipes/translation/multi30k/time_to_quality.py --workdir ~/runs/full29k [--seed 1]

For validation loss (and greedy validation BLEU, where the runs logged it with --eval-bleu): the
baseline's best value and the wall time at which its epoch ended; the first epoch at which R-Drop
is at least as good and its wall time; and the ratio of the two times (below 1: R-Drop gets there
sooner). Wall time is fairseq's own ``wall`` meter at the end of each epoch's training (it counts
the earlier epochs' validations too), summed over the processes of a run that was stopped and
resumed; the two runs must have trained on the same hardware, one at a time, for the ratio to mean
anything.
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from recipes.common.plot import parse_stats_line, read_valid_stats  # noqa: E402

# metric -> True where larger is better
METRICS = {"valid_loss": False, "valid_bleu": True}
# fairseq's trainer logs one of these as each fairseq-train process starts
RESUMED = re.compile(r"fairseq\.trainer \| Loaded checkpoint .* \(epoch (\d+) @")
FRESH = "fairseq.trainer | No existing checkpoint found"
# and this when --patience ends the training
EARLY_STOP = "early stop since valid performance hasn't improved"


def epoch_wall_times(log):
    """{epoch: seconds of training wall time when that epoch's training ended}, over all the
    processes a resumed run's log holds.

    fairseq's wall meter starts from 0 in every process (a resume does not restore it), so a
    resumed process's times are offset by the time at which the epoch before the one it resumes
    ended; the unfinished part of an epoch a stopped process was in is not counted (the resumed
    process trains that epoch again).
    """
    times, offset = {}, 0.0
    for line in Path(log).read_text(encoding="utf-8", errors="replace").splitlines():
        resumed = RESUMED.search(line)
        if resumed or FRESH in line:
            offset = times.get(int(resumed.group(1)) - 1, 0.0) if resumed else 0.0
            continue
        # fairseq prefixes the epoch summary's keys with "train_": its wall meter becomes
        # "train_wall" (and the time in train steps alone "train_train_wall")
        stats = parse_stats_line(line, "train_loss")
        if stats is not None:
            times[stats["epoch"]] = offset + stats["train_wall"]
    return times


def training_seconds(log):
    """The run's training wall time: when its last epoch's training ended (validations included)."""
    times = epoch_wall_times(log)
    return times[max(times)]


def first_epoch_reaching(stats, metric, target, larger_is_better):
    for s in stats:
        if metric in s and (s[metric] >= target if larger_is_better else s[metric] <= target):
            return s["epoch"]
    return None


def time_to_quality(baseline_log, rdrop_log):
    """One dict per metric both logs have: the baseline's best, R-Drop's first epoch reaching it,
    both wall times and their ratio (None where R-Drop never reaches it)."""
    base_stats, rdrop_stats = read_valid_stats(baseline_log), read_valid_stats(rdrop_log)
    base_wall, rdrop_wall = epoch_wall_times(baseline_log), epoch_wall_times(rdrop_log)
    rows = []
    for metric, larger in METRICS.items():
        if not any(metric in s for s in base_stats) or not any(metric in s for s in rdrop_stats):
            continue
        values = [s for s in base_stats if metric in s]
        best_value = (max if larger else min)(s[metric] for s in values)
        # the earliest epoch with that value: the time at which that quality was first there
        best = next(s for s in values if s[metric] == best_value)
        epoch = first_epoch_reaching(rdrop_stats, metric, best_value, larger)
        row = dict(metric=metric, baseline_best=best[metric], baseline_epoch=best["epoch"],
                   baseline_seconds=base_wall[best["epoch"]], rdrop_epoch=epoch,
                   rdrop_seconds=rdrop_wall[epoch] if epoch is not None else None)
        row["ratio"] = row["rdrop_seconds"] / row["baseline_seconds"] if epoch is not None else None
        rows.append(row)
    return rows


def format_rows(rows):
    lines = ["| quality | baseline's best | its epoch | baseline time | R-Drop first reaches it | R-Drop time "
             "| time ratio |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        reached = (f"epoch {r['rdrop_epoch']} | {r['rdrop_seconds'] / 60:.0f} min | {r['ratio']:.2f}"
                   if r["rdrop_epoch"] is not None else "never | - | -")
        lines.append(f"| {r['metric'].replace('_', ' ')} | {r['baseline_best']:g} | {r['baseline_epoch']} "
                     f"| {r['baseline_seconds'] / 60:.0f} min | {reached} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a run.py work folder with both runs trained")
    parser.add_argument("--seed", type=int, default=1, help="which seed's runs (default: %(default)s)")
    args = parser.parse_args(argv)
    seed_dir = args.workdir / "runs" / f"seed{args.seed}"
    logs = [seed_dir / run / "train.log" for run in ("baseline", "rdrop")]
    for log in logs:
        if not log.is_file():
            parser.error(f"{log} not found: train both runs of seed {args.seed} with run.py first")
    rows = time_to_quality(*logs)
    print(format_rows(rows))
    return rows


if __name__ == "__main__":
    main()
