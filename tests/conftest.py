"""Fixtures and hooks shared by the tests: the data folder, binarized slices of the real corpora, a
tiny translation task, ChildTuning's 'pre-trained' model and its D mask. What tests import (tiny models, the CLI runner, reference formulas) is in
helpers.py."""
import pytest

from helpers import COMMON, CT_TINY, LS, NO_DATA, USER_DIR, childtuning_mask, data_dir, run_cli, tiny_task


@pytest.fixture(scope="session")
def shared_data():
    path = data_dir()
    if path is None:
        pytest.skip(NO_DATA)
    return path


def pytest_collection_modifyitems(items):
    """Mark every test that needs the data folder (through any fixture) with ``data``."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def translation_bin(tmp_path_factory, shared_data):
    work = tmp_path_factory.mktemp("mt")
    tok = shared_data / "multi30k" / "tok"
    for split, n in (("train", 600), ("val", 60)):
        for lang in ("de", "en"):
            lines = (tok / f"{split}.lc.norm.tok.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (work / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_cli("fairseq-preprocess", "--source-lang", "de", "--target-lang", "en",
            "--trainpref", work / "train", "--validpref", work / "val", "--testpref", work / "val",
            "--destdir", work / "bin", "--joined-dictionary", "--workers", "1")
    return work / "bin"


@pytest.fixture(scope="session")
def lm_bin(tmp_path_factory, shared_data):
    work = tmp_path_factory.mktemp("lm")
    wt = shared_data / "wikitext-2"
    for split, n in (("train", 400), ("valid", 60), ("test", 60)):
        lines = (wt / f"wiki.{split}.tokens").read_text(encoding="utf-8").splitlines()[:n]
        (work / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", work / "train.txt",
            "--validpref", work / "valid.txt", "--testpref", work / "test.txt",
            "--destdir", work / "bin", "--workers", "1")
    return work / "bin"


@pytest.fixture
def task():
    return tiny_task()


@pytest.fixture(scope="session")
def childtuning_pretrained(translation_bin, tmp_path_factory):
    """A 'pre-trained' tiny transformer (CT_TINY): 2 plain updates."""
    save = tmp_path_factory.mktemp("pretrained")
    run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, *CT_TINY, *LS, "--max-tokens", "1500",
            "--max-update", "2", "--save-dir", save, "--no-epoch-checkpoints", *COMMON)
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def childtuning_d_mask(translation_bin, childtuning_pretrained, tmp_path_factory):
    """The mask command's file and output for the 'pre-trained' model (dropout 0)."""
    path = tmp_path_factory.mktemp("mask") / "mask.pt"
    return path, childtuning_mask(translation_bin, childtuning_pretrained, path, "--dropout", "0")
