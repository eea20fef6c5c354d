"""recipes/common/plot.py: the train/valid loss figure keeps the validation curves readable.

The logs below follow the Multi30k main job's shape (base 2 losses): train loss from 11 down to
4, the baseline's validation loss lowest at epoch 18 (6.548) and rising to 6.633 by epoch 26, R-Drop's
still falling. On an axis that also holds the train loss, that rise is a few pixels.
"""
import json

import pytest

from recipes.common.plot import closeup_window, plot_train_valid, train_valid_figure

EPOCHS = range(1, 27)


def baseline_valid(epoch):
    return 6.548 + 0.03 * (18 - epoch) if epoch <= 18 else 6.548 + (6.633 - 6.548) * (epoch - 18) / 8


def rdrop_valid(epoch):
    return 6.209 + 0.04 * (26 - epoch)


def write_log(path, valid):
    lines = []
    for epoch in EPOCHS:
        train = 11 - 7 * (epoch - 1) / 25  # 11 -> 4
        lines.append(f'2026 | INFO | train | {json.dumps({"epoch": epoch, "train_loss": str(round(train, 3))})}')
        lines.append(f'2026 | INFO | valid | {json.dumps({"epoch": epoch, "valid_loss": str(round(valid(epoch), 3))})}')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def logs(tmp_path):
    return {"baseline": write_log(tmp_path / "baseline.log", baseline_valid),
            "rdrop": write_log(tmp_path / "rdrop.log", rdrop_valid)}


def test_closeup_panel_fits_the_validation_curves_of_the_second_half(logs):
    import matplotlib.pyplot as plt

    fig = train_valid_figure(logs, "t")
    try:
        full, close = fig.axes
        low, high = close.get_ylim()
        assert close.get_xlim() == (13.5, 26.5)  # epochs 14-26
        # every validation point of those epochs inside, with little room to spare
        shown = [v(e) for v in (baseline_valid, rdrop_valid) for e in EPOCHS if e >= 14]
        assert low < min(shown) and max(shown) < high
        assert high - low < 1.2 * (max(shown) - min(shown))
        # the baseline's over-fitting (6.548 -> 6.633) spans a visible part of the close-up,
        # where the full panel (train loss 4 to 11 included) squeezes it to almost nothing
        rise = 6.633 - 6.548
        assert rise / (high - low) > 0.15
        full_low, full_high = full.get_ylim()
        assert full_low < 4 and full_high > 11 and rise / (full_high - full_low) < 0.02
        assert {line.get_label() for line in close.get_lines()} == {"baseline valid", "rdrop valid"}
    finally:
        plt.close(fig)


def test_closeup_window_of_one_epoch_is_not_empty():
    first, low, high = closeup_window({"baseline": [(1, 7.5)], "rdrop": [(1, 7.5)]})
    assert first == 1 and low < 7.5 < high


def test_plot_train_valid_writes_a_png(logs, tmp_path):
    out = plot_train_valid(logs, tmp_path / "sub" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
