"""recipes/common/data.py: checksummed downloads that never leave a complete-looking bad file,
and preparation stages that resume after a failure without redoing finished work."""

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO
from recipes.common import data
from recipes.common.data import DataError, DownloadError, Stages, atomic_path, download, resolve


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
    with pytest.raises(DownloadError):
        resolve("multi30k/raw/train.de.gz", src.as_uri(), sha)
    assert not path.exists()


def test_unreachable_host_fails_in_one_line_naming_the_url_and_leaves_nothing(tmp_path):
    dest = tmp_path / "cache" / "train.de.gz"
    with pytest.raises(DownloadError) as err:
        download("http://nonexistent.invalid/train.de.gz", dest, "0" * 64)
    assert str(err.value).startswith("could not download http://nonexistent.invalid/train.de.gz: ")
    assert "\n" not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__
    assert list(dest.parent.iterdir()) == []


def test_failed_download_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    with pytest.raises(DownloadError) as err:
        resolve("multi30k/raw/train.de.gz", "http://nonexistent.invalid/train.de.gz", "0" * 64)
    message = str(err.value)
    assert "http://nonexistent.invalid/train.de.gz" in message
    assert f"${data.DATA_DIR_ENV}/multi30k/raw/train.de.gz" in message and "wikitext-2/" in message


def test_main_job_without_network_ends_in_a_few_lines(tmp_path):
    """recipes/translation/multi30k/run.py with urlopen failing as it does offline (monkeypatched,
    so that a machine with internet downloads nothing either)."""
    code = textwrap.dedent("""
        import runpy, sys, urllib.error, urllib.request

        def offline(url, *args, **kwargs):
            raise urllib.error.URLError(OSError(-2, "Name or service not known"))

        urllib.request.urlopen = offline
        sys.argv = ["run.py", "--workdir", sys.argv[1]]
        runpy.run_path("recipes/translation/multi30k/run.py", run_name="__main__")
    """)
    env = {k: v for k, v in os.environ.items() if k != data.DATA_DIR_ENV}
    env[data.CACHE_DIR_ENV] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "work")], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
    assert "could not download https://raw.githubusercontent.com/multi30k/dataset/" in proc.stderr
    assert "Name or service not known" in proc.stderr and data.DATA_DIR_ENV in proc.stderr


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
