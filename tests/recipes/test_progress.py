"""The recipes' one-line-per-epoch progress (recipes/common/progress.py) from fairseq's JSON log,
and the job pool's use of it."""
import sys

from recipes.common.progress import EpochProgress, format_duration

# the lines fairseq-train prints with --log-format json (shortened to the fields read here)
TRAIN = ('2026-12-04 16:40:01 | INFO | train | {"epoch": %d, "train_loss": "%s", "train_nll_loss": "3.1", '
         '"train_wall": "170"}')
VALID = ('2026-12-04 16:40:09 | INFO | valid | {"epoch": %d, "valid_loss": "%s", "valid_nll_loss": "3.2", '
         '"valid_bleu": "35.2", "valid_best_loss": "4.5"}')
INNER = '2026-12-04 16:39:00 | INFO | train_inner | {"epoch": 1, "update": 0.5, "loss": "9.1"}'


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def epoch_lines(progress, clock, epoch, train, valid, seconds):
    """fairseq's order: inner train lines, the epoch's validation, then its train summary."""
    clock.now += seconds
    assert progress.feed(INNER) is None and progress.feed(VALID % (epoch, valid)) is None
    return progress.feed(TRAIN % (epoch, train))


def test_one_line_per_validation_with_best_epoch_and_time_left():
    clock = Clock()
    progress = EpochProgress(max_epoch=10, clock=clock)
    line = epoch_lines(progress, clock, 1, "6.5", "5.0", 120)
    assert line == ("epoch 1/10 | train 6.500 | valid 5.000 (best 5.000, epoch 1) | valid bleu 35.20 | "
                    "2m00s, 2.0 min/epoch, ~18m00s left")
    line = epoch_lines(progress, clock, 2, "5.5", "5.2", 180)  # worse: the best stays at epoch 1
    assert "valid 5.200 (best 5.000, epoch 1)" in line and "5m00s, 2.5 min/epoch, ~20m00s left" in line
    assert progress.feed("some other line {not json") is None
    # an epoch without validation (--disable-validation) still gets its line
    assert progress.feed(TRAIN % (3, "5.0")).startswith("epoch 3/10 | train 5.000 | ")


def test_patience_counts_as_fairseq_does_and_bounds_the_time_left():
    clock = Clock()
    progress = EpochProgress(max_epoch=200, patience=3, clock=clock)
    epoch_lines(progress, clock, 1, "6.0", "5.000", 60)
    line = epoch_lines(progress, clock, 2, "5.0", "5.000", 60)  # equal is no improvement (strict <)
    assert line.endswith("<= 3h18m left (stops after 3 epochs without improvement: 1 so far)")
    line = epoch_lines(progress, clock, 3, "4.0", "4.900", 60)
    assert "(best 4.900, epoch 3)" in line and line.endswith("0 so far)")


def test_a_resumed_run_keeps_its_best_and_times_only_its_own_epochs():
    clock = Clock()
    progress = EpochProgress(max_epoch=20, patience=5, clock=clock)
    earlier = [VALID % (1, "5.0"), TRAIN % (1, "6"), VALID % (2, "5.1"), TRAIN % (2, "5")]
    clock.now = 1000.0  # time spent before the resume does not count
    progress.replay(earlier)
    line = epoch_lines(progress, clock, 3, "4.5", "5.05", 90)
    assert "valid 5.050 (best 5.000, epoch 1)" in line and "2 so far" in line
    assert "1m30s, 1.5 min/epoch, <= 25m30s left" in line


def test_best_follows_the_checkpoint_metric_when_it_is_not_the_loss():
    """A classification run keeps checkpoint_best.pt by, say, mcc (maximised): the line shows that
    metric's best, and --patience counts with it, not with the loss."""
    clock = Clock()
    progress = EpochProgress(max_epoch=5, patience=2, clock=clock, metric="mcc", maximize=True)
    valid = ('2026-12-04 16:40:09 | INFO | valid | {"epoch": %d, "valid_loss": "%s", "valid_mcc": "%s"}')
    lines = []
    for epoch, loss, mcc in [(1, "0.833", "20.1"), (2, "0.783", "30.5"), (3, "0.867", "34.9"), (4, "0.985", "31.2")]:
        assert progress.feed(valid % (epoch, loss, mcc)) is None
        lines.append(progress.feed(TRAIN % (epoch, "0.5")))
    # the loss was lowest at epoch 2, the mcc highest at epoch 3
    assert "| valid 0.867 | valid mcc 34.90 (best 34.90, epoch 3) |" in lines[2]
    assert "| valid 0.985 | valid mcc 31.20 (best 34.90, epoch 3) |" in lines[3] and lines[3].endswith("1 so far)")


def test_format_duration():
    assert format_duration(59.6) == "1m00s" and format_duration(3600 * 2 + 61) == "2h01m"


def test_job_pool_prints_progress_lines_and_keeps_the_whole_log(tmp_path, capsys):
    from recipes.common.jobs import run_jobs

    script = tmp_path / "fake_train.py"
    script.write_text("print(%r)\nprint(%r)\nprint(%r)\n" % (INNER, VALID % (1, "5.0"), TRAIN % (1, "6.5")))
    log = tmp_path / "job.log"
    run_jobs([("job", [sys.executable, script, "--max-epoch", "4", "--patience", "2"], log)], parallel=1, echo=True)
    printed = capsys.readouterr().out
    assert f"[job] started, its whole log in {log}" in printed
    assert "[job] epoch 1/4 | train 6.500 | valid 5.000 (best 5.000, epoch 1)" in printed
    assert "train_inner" not in printed  # fairseq's raw lines stay in the log
    assert "train_inner" in log.read_text() and "--max-epoch 4" in log.read_text().splitlines()[0]
    # the pool reads the checkpoint metric from the command line
    mcc_valid = '2026-12-04 16:40:09 | INFO | valid | {"epoch": 1, "valid_loss": "0.8", "valid_mcc": "33.3"}'
    script.write_text("print(%r)\nprint(%r)\n" % (mcc_valid, TRAIN % (1, "0.7")))
    run_jobs([("cls", [sys.executable, script, "--best-checkpoint-metric", "mcc", "--maximize-best-checkpoint-metric"],
               tmp_path / "cls.log")], parallel=1, echo=True)
    assert "[cls] epoch 1 | train 0.700 | valid 0.800 | valid mcc 33.30 (best 33.30, epoch 1) |" in capsys.readouterr().out
