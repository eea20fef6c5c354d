"""--patience across a resume (fixes/patience.py): the count of validations without improvement is
saved in checkpoints and restored, so a resumed run stops where an uninterrupted one stops."""
import re

import fairseq_cli.train
import pytest

import flat_layout_checkpoints as tiny_data
from helpers import USER_DIR, run_cli
from rdrop_fairseq.fixes.patience import STATE_KEY, patience_state, restore_patience_state


@pytest.fixture
def counter():
    """fairseq's counter (attributes of should_stop_early), restored after the test."""
    function = fairseq_cli.train.should_stop_early
    saved = {k: getattr(function, k) for k in ("best", "num_runs") if hasattr(function, k)}
    yield function
    for k in ("best", "num_runs"):
        if k in saved:
            setattr(function, k, saved[k])
        elif hasattr(function, k):
            delattr(function, k)


def test_state_round_trip_and_plain_fairseq_checkpoints(counter):
    counter.best, counter.num_runs = 3.5, 2
    state = patience_state()
    assert state == {"best": 3.5, "num_runs": 2}
    counter.best, counter.num_runs = None, 0
    assert restore_patience_state({STATE_KEY: state, "best": 9.0}) == state
    assert (counter.best, counter.num_runs) == (3.5, 2)
    # a checkpoint of plain fairseq: its best value, the count from 0
    assert restore_patience_state({"best": 4.25}) == {"best": 4.25, "num_runs": 0}
    assert (counter.best, counter.num_runs) == (4.25, 0)
    assert restore_patience_state({"val_loss": 1.0}) is None and restore_patience_state(None) is None


def epochs_trained(log):
    return max(int(e) for e in re.findall(r"end of epoch (\d+)", log))


@pytest.mark.slow
def test_a_resumed_run_stops_where_an_uninterrupted_one_stops(tmp_path):
    """With --lr 0 the validation loss never improves: --patience 2 stops after epoch 3 (best at 1,
    then two without improvement). Interrupted after epoch 2, the resumed run must stop after
    epoch 3 too; with the repair switched off it counts afresh and stops after epoch 5."""
    args = [tiny_data.TRANSLATION_DATA, *tiny_data.TRANSFORMER, *tiny_data.TRANSFORMER_CRITERION,
            *tiny_data.common(USER_DIR), "--optimizer", "adam", "--lr", "0", "--patience", "2"]
    whole = run_cli("fairseq-train", *args, "--max-epoch", "10", "--save-dir", tmp_path / "whole")
    assert epochs_trained(whole) == 3 and "early stop since valid performance hasn't improved" in whole
    for name, env, stops_after in (("fixed", {}, 3), ("switched_off", {"RDROP_FAIRSEQ_NO_PATIENCE_FIX": "1"}, 5)):
        save = tmp_path / name
        run_cli("fairseq-train", *args, "--max-epoch", "2", "--save-dir", save, env=env)
        resumed = run_cli("fairseq-train", *args, "--max-epoch", "10", "--save-dir", save, env=env)
        assert epochs_trained(resumed) == stops_after, (name, resumed[-2000:])
