"""--patience across a resume (rdrop_fairseq/patience.py): fairseq keeps its count of validations
without improvement in memory only; the plugin saves it in checkpoints so that a resumed run stops
at the epoch an uninterrupted one would."""
import re

import pytest

from helpers import COMMON, USER_DIR, run_cli
from test_fairseq_cli import TINY_TRANSFORMER

STOP = "early stop since valid performance hasn't improved for last 3 runs"


def train(translation_bin, save, max_epoch, env=None):
    # lr 1e-12: the weights (hence the validation loss, logged to 3 decimals) never change, so
    # epoch 1 is the best and every later epoch counts as one without improvement
    return run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, "--arch", "transformer",
                   *TINY_TRANSFORMER, "--criterion", "label_smoothed_cross_entropy", "--max-tokens", "4000",
                   "--save-dir", save, "--no-epoch-checkpoints", "--patience", "3",
                   "--max-epoch", str(max_epoch), *COMMON, "--lr", "1e-12", env=env)


def last_epoch(log):
    return max(int(e) for e in re.findall(r"\| epoch (\d+) \| valid on 'valid' subset", log))


@pytest.mark.parametrize("fix", [True, False], ids=["with_fix", "fairseq_alone"])
def test_resumed_run_stops_where_an_uninterrupted_one_would(translation_bin, tmp_path, fix):
    env = {} if fix else {"RDROP_FAIRSEQ_NO_PATIENCE_FIX": "1"}
    uninterrupted = train(translation_bin, tmp_path / "one", 20, env)
    assert STOP in uninterrupted and last_epoch(uninterrupted) == 4  # best at 1, then 2, 3, 4 without

    first = train(translation_bin, tmp_path / "two", 2, env)  # interrupted after epoch 2 (1 without)
    assert STOP not in first
    resumed = train(translation_bin, tmp_path / "two", 20, env)
    assert STOP in resumed
    if fix:
        assert "--patience resumes from" in resumed and "1 validation(s) without improvement" in resumed
        assert last_epoch(resumed) == 4
    else:  # fairseq forgets the count: epoch 3 becomes the best, it stops 3 epochs later
        assert last_epoch(resumed) == 6
