"""Wall times from fairseq's logs for runs stopped and resumed: fairseq's wall meter restarts at 0
in every process, so the run's times must carry on from where its last finished epoch ended."""
import json

import pytest

from recipes.translation.multi30k.time_to_quality import epoch_wall_times, time_to_quality, training_seconds

CHECKPOINT = "/w/runs/seed1/{run}/checkpoint_last.pt"


def fresh(run):
    return f"2026-12-05 06:18:06 | INFO | fairseq.trainer | No existing checkpoint found {CHECKPOINT.format(run=run)}"


def resumed(run, epoch, updates):
    return (f"2026-12-05 11:32:24 | INFO | fairseq.trainer | Loaded checkpoint {CHECKPOINT.format(run=run)} "
            f"(epoch {epoch} @ {updates} updates)")


def train_end(epoch, wall):
    stats = {"epoch": epoch, "train_loss": "5.0", "train_train_wall": str(wall - 5), "train_wall": str(wall)}
    return f"2026-12-05 06:22:54 | INFO | train | {json.dumps(stats)}"


def inner(epoch, wall):  # a train_inner line: no train_loss, must not count as an epoch's end
    stats = {"epoch": epoch, "update": 0.5, "loss": "5.0", "train_wall": "40", "wall": str(wall)}
    return f"2026-12-05 06:20:00 | INFO | train_inner | {json.dumps(stats)}"


def valid(epoch, loss):
    return f"2026-12-05 06:22:54 | INFO | valid | {json.dumps({'epoch': epoch, 'valid_loss': str(loss)})}"


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_one_process_reads_fairseqs_wall_meter(tmp_path):
    log = write(tmp_path / "train.log", [fresh("baseline"), inner(1, 50), train_end(1, 100), train_end(2, 205)])
    assert epoch_wall_times(log) == {1: 100.0, 2: 205.0}
    assert training_seconds(log) == 205.0


def test_a_resumed_run_carries_on_from_its_last_finished_epoch(tmp_path):
    # stopped during epoch 4 (its partial time is lost: the resumed process trains epoch 4 again)
    log = write(tmp_path / "train.log", [
        fresh("rdrop"), train_end(1, 100), train_end(2, 200), train_end(3, 300), inner(4, 350),
        resumed("rdrop", 4, 30), inner(4, 60), train_end(4, 110), train_end(5, 215),
        # stopped after epoch 5's summary but before its checkpoint was saved: epoch 5 again
        resumed("rdrop", 5, 40), train_end(5, 104), train_end(6, 208),
    ])
    assert epoch_wall_times(log) == {1: 100.0, 2: 200.0, 3: 300.0, 4: 410.0, 5: 514.0, 6: 618.0}
    assert training_seconds(log) == 618.0


def test_time_to_quality_over_a_resumed_run(tmp_path):
    base = write(tmp_path / "baseline.log", [
        fresh("baseline"), train_end(1, 100), valid(1, 5.0), train_end(2, 200), valid(2, 4.0),
        train_end(3, 300), valid(3, 4.5)])
    rdrop = write(tmp_path / "rdrop.log", [
        fresh("rdrop"), train_end(1, 180), valid(1, 5.5), train_end(2, 360), valid(2, 4.2),
        resumed("rdrop", 3, 20), train_end(3, 190), valid(3, 3.9)])
    (row,) = time_to_quality(base, rdrop)  # no valid_bleu in these logs: one row
    assert (row["metric"], row["baseline_best"], row["baseline_epoch"], row["rdrop_epoch"]) == ("valid_loss", 4.0, 2, 3)
    assert (row["baseline_seconds"], row["rdrop_seconds"]) == (200.0, 550.0)
    assert row["ratio"] == pytest.approx(550 / 200)


def test_kept_summaries_give_the_same_time_to_quality(tmp_path):
    """keep_log.py's summaries drop fairseq's per-update lines and warnings but keep everything the
    time to quality, the plot and the stop reason read."""
    from recipes.translation.multi30k.keep_log import keep_logs
    from recipes.translation.multi30k.run import stop_reason
    work, out = tmp_path / "w", tmp_path / "kept"
    logs, costs = {}, {"baseline": 100, "rdrop": 180}  # seconds an epoch
    for run, cost in costs.items():
        (work / "runs" / "seed1" / run).mkdir(parents=True)
        lines = [f"fairseq-train /w/data-bin --seed 1 --save-dir /w/runs/seed1/{run}", fresh(run), inner(1, 50),
                 "  key_padding_mask = _canonical_mask(", train_end(1, cost), valid(1, 5.0),
                 inner(2, cost + 50), resumed(run, 2, 40), inner(2, 30), train_end(2, cost), valid(2, 4.0 - cost / 1000),
                 "2026-12-05 07:00:00 | INFO | fairseq_cli.train | early stop since valid performance hasn't "
                 "improved for last 5 runs"]
        logs[run] = write(work / "runs" / "seed1" / run / "train.log", lines)
    written = keep_logs(work, out)
    assert written == [out / "runs" / "seed1" / run / "train.log" for run in ("baseline", "rdrop")]
    for (run, cost), kept in zip(costs.items(), written):
        text = kept.read_text()
        assert text.startswith(f"fairseq-train /w/data-bin --seed 1 --save-dir /w/runs/seed1/{run}\n")
        assert "train_inner" not in text and "_canonical_mask" not in text
        assert len(text.splitlines()) == 8  # command, 2 process starts, 2 x (train, valid), early stop
        # epoch 2 resumed: its wall meter restarts, carried on from epoch 1's end
        assert epoch_wall_times(kept) == epoch_wall_times(logs[run]) == {1: cost, 2: 2 * cost}
        assert stop_reason(kept) == "patience"
    assert time_to_quality(*written) == time_to_quality(logs["baseline"], logs["rdrop"])
