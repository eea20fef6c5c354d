"""recipes/common/settings.py: the overrides every baseline-vs-R-Drop recipe takes, and the refusal
to resume a work folder made with other settings."""
import argparse
import json

import pytest

from recipes.common.settings import apply_overrides, check_same_config

SETTING = {"max_epoch": 10, "rdrop_alpha": 5.0, "lr": 1e-3}


def parse(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-epoch", type=int)
    parser.add_argument("--rdrop-alpha", type=float)
    return parser.parse_args(argv), parser


def test_overrides_replace_only_what_is_given_and_leave_the_setting_alone():
    args, parser = parse()
    assert apply_overrides(SETTING, args, parser) == SETTING
    args, parser = parse("--max-epoch", "3", "--rdrop-alpha", "0.5")
    cfg = apply_overrides(SETTING, args, parser)
    assert cfg == {"max_epoch": 3, "rdrop_alpha": 0.5, "lr": 1e-3}
    assert SETTING == {"max_epoch": 10, "rdrop_alpha": 5.0, "lr": 1e-3}  # a copy, not the setting


@pytest.mark.parametrize("argv, message", [
    (("--max-epoch", "0"), "--max-epoch must be >= 1, got 0"),
    (("--rdrop-alpha", "0"), "--rdrop-alpha must be > 0, got 0.0"),
    (("--rdrop-alpha", "-1"), "--rdrop-alpha must be > 0, got -1.0"),
    (("--rdrop-alpha", "nan"), "--rdrop-alpha must be > 0, got nan"),
])
def test_bad_override_is_a_usage_error_naming_the_option(argv, message, capsys):
    args, parser = parse(*argv)
    with pytest.raises(SystemExit) as exit_info:
        apply_overrides(SETTING, args, parser)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_work_folder_keeps_its_settings(tmp_path):
    work = tmp_path / "work"
    check_same_config(work, SETTING)  # a new folder records the setting
    assert json.loads((work / "config.json").read_text()) == SETTING
    check_same_config(work, dict(SETTING))  # the same setting resumes
    with pytest.raises(SystemExit, match="was prepared with other settings.*pass another --workdir"):
        check_same_config(work, dict(SETTING, max_epoch=3))
    assert json.loads((work / "config.json").read_text()) == SETTING  # the record is not overwritten
