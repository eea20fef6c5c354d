"""The tests' data folder: an empty RDROP_DATA_DIR is unset, and without a folder the
data-dependent tests skip with a message instead of failing."""
import os
import shutil
import subprocess
import sys

import helpers


def test_empty_variable_means_unset(monkeypatch, tmp_path):
    monkeypatch.setattr(helpers, "REPO", tmp_path / "repo")  # no ../shared/data beside it
    monkeypatch.setenv("RDROP_DATA_DIR", "")
    assert helpers.data_dir() is None
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert helpers.data_dir() == tmp_path / "shared" / "data"
    monkeypatch.setenv("RDROP_DATA_DIR", str(tmp_path))
    assert helpers.data_dir() == tmp_path


def test_data_tests_skip_with_the_message_in_a_checkout_without_data(tmp_path):
    """A copy of the tests where ../shared/data does not exist, RDROP_DATA_DIR="" as an older
    scripts/test.sh exported it: the data fixtures skip (they used to read the repo root)."""
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(helpers.REPO / "tests" / name, repo / "tests")
    shutil.copy(helpers.REPO / "pytest.ini", repo)
    (repo / "tests" / "test_needs_data.py").write_text(
        "def test_reads_a_corpus(translation_bin):\n    assert translation_bin.is_dir()\n")
    env = dict(os.environ, RDROP_DATA_DIR="")
    out = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-m", "data"],
                         cwd=repo, env=env, capture_output=True, text=True).stdout
    assert "1 skipped" in out and helpers.NO_DATA in out, out[-2000:]
