"""recipes/common/data.py: checksummed downloads that never leave a complete-looking bad file,
and preparation stages that resume after a failure without redoing finished work."""

import hashlib
import shutil

import pytest

from recipes.common import data
from recipes.common.data import DataError, Stages, atomic_path, download, resolve


def _source(tmp_path, content=b"Zwei Hunde spielen im Schnee.\n"):
    src = tmp_path / "src" / "train.de.gz"
    src.parent.mkdir()
    src.write_bytes(content)
    return src, hashlib.sha256(content).hexdigest()


def test_download_checks_sha256_and_renames_only_when_it_matches(tmp_path):
    src, sha = _source(tmp_path)
    dest = tmp_path / "cache" / "train.de.gz"
    assert download(src.as_uri(), dest, sha) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert not dest.with_name("train.de.gz.part").exists()


def test_checksum_mismatch_names_file_and_both_hashes_and_leaves_nothing(tmp_path):
    src, actual = _source(tmp_path)
    expected = "0" * 64
    dest = tmp_path / "cache" / "train.de.gz"
    with pytest.raises(DataError) as err:
        download(src.as_uri(), dest, expected)
    message = str(err.value)
    assert "train.de.gz" in message and expected in message and actual in message
    assert list(dest.parent.iterdir()) == []  # neither the file nor its .part


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    src, sha = _source(tmp_path)
    dest = tmp_path / "cache" / "train.de.gz"

    def copy_half_then_die(fsrc, fdst):
        fdst.write(fsrc.read(5))
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        download(src.as_uri(), dest, sha)
    assert list(dest.parent.iterdir()) == []


def test_resolve_downloads_once_into_the_cache_then_reuses_it(tmp_path, monkeypatch):
    src, sha = _source(tmp_path)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    path = resolve("multi30k/raw/train.de.gz", src.as_uri(), sha)
    assert path == tmp_path / "cache" / "multi30k" / "raw" / "train.de.gz"
    src.unlink()  # a second call must not touch the network/source again
    assert resolve("multi30k/raw/train.de.gz", src.as_uri(), sha) == path
    # A corrupted cached copy is fetched again (and here fails loudly, the source being gone).
    path.write_bytes(b"corrupt")
    with pytest.raises(OSError):
        resolve("multi30k/raw/train.de.gz", src.as_uri(), sha)
    assert not path.exists()


def test_local_data_dir_missing_file_names_variable_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DataError) as err:
        resolve("multi30k/raw/train.de.gz", "https://example.invalid/x", "0" * 64)
    assert data.DATA_DIR_ENV in str(err.value) and "multi30k/raw/train.de.gz" in str(err.value)


def test_local_data_dir_file_with_wrong_content_is_refused(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("not the corpus")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DataError, match="expected sha256 " + "1" * 64):
        resolve("a.txt", "https://example.invalid/a.txt", "1" * 64)
    sha = hashlib.sha256(b"not the corpus").hexdigest()
    assert resolve("a.txt", "https://example.invalid/a.txt", sha) == tmp_path / "a.txt"


def test_interrupted_preparation_resumes_without_redoing_finished_stages(tmp_path):
    calls = {"extract": 0, "encode": 0}
    fail_once = {"encode": True}

    def extract():
        calls["extract"] += 1
        with atomic_path(tmp_path / "raw.txt") as tmp:
            tmp.write_text("hallo welt\n")

    def encode():
        calls["encode"] += 1
        with atomic_path(tmp_path / "enc.txt") as tmp:
            tmp.write_text("▁hallo ▁welt\n")  # half the output is written...
            if fail_once.pop("encode", False):
                raise RuntimeError("killed midway")  # ...then the stage dies

    def prepare():
        stages = Stages(tmp_path / "stages", log=lambda msg: None)
        stages.run("extract", extract)
        stages.run("encode", encode)
        return stages

    with pytest.raises(RuntimeError, match="killed midway"):
        prepare()
    assert (tmp_path / "raw.txt").exists() and (tmp_path / "stages" / "extract.done").exists()
    # The failed stage left neither its output (not even the temporary) nor a marker.
    assert not (tmp_path / "enc.txt").exists() and not (tmp_path / "enc.txt.tmp").exists()
    assert not (tmp_path / "stages" / "encode.done").exists()

    stages = prepare()
    assert calls == {"extract": 1, "encode": 2}
    assert (tmp_path / "enc.txt").read_text() == "▁hallo ▁welt\n"
    assert stages.is_done("extract") and stages.is_done("encode")
    prepare()  # everything done: nothing runs again
    assert calls == {"extract": 1, "encode": 2}
