"""Read per-epoch validation stats from fairseq logs and plot runs against each other.

fairseq-train with ``--log-format json`` logs one line per validation, e.g.
``... | INFO | valid | {"epoch": 3, "valid_loss": "5.43", "valid_nll_loss": "3.9", ...}``;
values are strings, so they are converted to floats here.
"""

import json
from collections import Counter
from pathlib import Path


def read_valid_stats(log_path):
    """Per-epoch validation stats (dicts of floats, ``epoch`` an int) in the order they were logged.

    An epoch validated twice (a resumed run repeats the last one) keeps its latest line.
    """
    return read_epoch_stats(log_path, "valid_loss")


def read_epoch_stats(log_path, key):
    """Per-epoch stats of the json log lines holding ``key`` (``valid_loss``: validation,
    ``train_loss``: fairseq's end-of-epoch train summary), latest line per epoch, in epoch order."""
    by_epoch = {}
    for line in Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines():
        stats = parse_stats_line(line, key)
        if stats is not None:
            by_epoch[stats["epoch"]] = stats
    if not by_epoch:
        raise ValueError(f"no {key} lines (json log format) found in {log_path}")
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def parse_stats_line(line, key):
    """The numeric stats of one json log line holding ``key`` (``epoch`` an int), else None."""
    start = line.find("{")
    if start < 0 or f'"{key}"' not in line:
        return None
    try:
        raw = json.loads(line[start:])
    except json.JSONDecodeError:
        return None
    stats = {name: float(value) for name, value in raw.items() if _is_number(value)}
    stats["epoch"] = int(stats["epoch"])
    return stats


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


# one per seed: five seeds (the sentence-level tables) get five distinguishable lines
SEED_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))


def plot_runs(curves, out_png, title="", metrics=("valid_loss", "valid_bleu")):
    """One panel per metric present in the stats, one line per run (``curves``: name -> stats list)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    present = [m for m in metrics if any(m in s for stats in curves.values() for s in stats)]
    # "run (seed S)" names: one colour per run, one line style per seed, so that a sweep of many
    # runs x seeds stays readable; the one legend goes beside the last panel
    groups = list(dict.fromkeys(name.split(" (")[0] for name in curves))
    drawn, style = Counter(), {}  # lines drawn so far per run: the seed's line style
    for name in curves:
        group = name.split(" (")[0]
        style[name] = dict(color=f"C{groups.index(group) % 10}", linestyle=SEED_LINESTYLES[drawn[group] % len(SEED_LINESTYLES)])
        drawn[group] += 1
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present) + 2.5, 3.6), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for name, stats in curves.items():
            points = [(s["epoch"], s[metric]) for s in stats if metric in s]
            ax.plot(*zip(*points), marker="o", markersize=3, label=name, **style[name])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def closeup_window(curves):
    """The close-up of validation curves: (first epoch, y low, y high) over the second half of the
    epochs, where over-fitting shows; ``curves``: name -> [(epoch, loss), ...].

    A y-axis that also holds the first epochs (and the train loss) spans several units of loss and
    flattens the hundredths by which an over-fitting validation loss rises.
    """
    last = max(epoch for points in curves.values() for epoch, _ in points)
    first = (last + 2) // 2  # epochs 6-10 of 10, 14-26 of 26; the only epoch of a 1-epoch run
    values = [loss for points in curves.values() for epoch, loss in points if epoch >= first]
    low, high = min(values), max(values)
    pad = max(high - low, 1e-3) * 0.08
    return first, low - pad, high + pad


def train_valid_figure(logs, title=""):
    """The R-Drop paper's Figure 2 view (train and validation loss per epoch, one colour per run),
    beside a close-up of the validation losses over the second half of training.

    ``logs``: run name -> fairseq json train.log. Both losses are per target token of one copy
    (the plugin logs R-Drop's train loss without the KL term), so the curves are comparable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax, close) = plt.subplots(1, 2, figsize=(11, 4))
    valid = {}
    for i, (name, log) in enumerate(logs.items()):
        colour = f"C{i}"
        for key, style, label in (("train_loss", "--", "train"), ("valid_loss", "-", "valid")):
            stats = read_epoch_stats(log, key)
            ax.plot([s["epoch"] for s in stats], [s[key] for s in stats], style, color=colour,
                    marker="o" if key == "valid_loss" else None, markersize=3, label=f"{name} {label}")
        valid[name] = [(s["epoch"], s["valid_loss"]) for s in read_epoch_stats(log, "valid_loss")]
        close.plot(*zip(*valid[name]), "-", color=colour, marker="o", markersize=3, label=f"{name} valid")
    first, low, high = closeup_window(valid)
    last = max(epoch for points in valid.values() for epoch, _ in points)
    close.set_xlim(first - 0.5, last + 0.5)
    close.set_ylim(low, high)
    ax.set_ylabel("label-smoothed loss per token (base 2)")
    ax.set_title("all epochs, train loss dashed", fontsize=10)
    close.set_title(f"validation loss, epochs {first}-{last}", fontsize=10)
    for axis in (ax, close):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_train_valid(logs, out_png, title=""):
    """Save ``train_valid_figure(logs, title)`` as a PNG; returns its path."""
    import matplotlib.pyplot as plt

    fig = train_valid_figure(logs, title)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
