"""Find a corpus file, and run a data preparation as resumable stages.

Corpus files come either from a local folder laid out like the project's shared data folder
(env var ``RDROP_DATA_DIR``; nothing is downloaded then) or from the corpus's public URL into a cache
folder (``RDROP_CACHE_DIR``, default ``~/.cache/rdrop-fairseq``), checked against a sha256 sum.

A download is written to ``<file>.part`` and renamed only once its checksum matches, so an interrupted
or corrupted download never leaves a file that looks complete.  Stages follow the same rule: each
writes its outputs under temporary names, renames them, and only then drops a ``<stage>.done``
marker; a rerun skips every stage whose marker exists.
"""

import hashlib
import http.client
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from recipes.common.fairseq_bin import fairseq_bin_dir

DATA_DIR_ENV = "RDROP_DATA_DIR"
CACHE_DIR_ENV = "RDROP_CACHE_DIR"


# Where each recipe looks under RDROP_DATA_DIR (the layout of the project's shared data folder).
LAYOUT = ("multi30k/raw/{train,val,test_2016_flickr}.{de,en}.gz, wikitext-2/wiki.{train,valid,test}.tokens, "
          "scitldr/SciTLDR-A/{train,dev,test}.jsonl, iwslt14/orig_de-en/ (see each recipe's README)")
# What a failed download raises: no network, unknown host, HTTP error, connection cut midway.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)


class DataError(RuntimeError):
    """A corpus file is missing, or its content does not match the expected checksum."""


class DownloadError(DataError):
    """A corpus file could not be fetched from its URL."""


def local_copy_hint(rel_path):
    return (f"To use a local copy instead (nothing is downloaded then), set {DATA_DIR_ENV} to a folder "
            f"holding it as ${DATA_DIR_ENV}/{rel_path}; the recipes expect the layout {LAYOUT}.")


def file_digest(path, algorithm="sha256"):
    """Hex digest of a file, read in 1 MiB blocks (archives can be large)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path):
    return file_digest(path, "sha256")


def cache_dir():
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "rdrop-fairseq")


def download(url, dest, sha256):
    """Fetch ``url`` to ``dest`` via ``dest.part``; rename only after the sha256 matches.

    ``sha256=None`` is for files whose checksum is not pinned (the callers print the
    sha256 of what they got instead); the .part-then-rename rule still holds.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    print(f"[data] downloading {url} -> {dest}", flush=True)
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
                shutil.copyfileobj(response, out)
        except NETWORK_ERRORS as error:  # one line instead of urllib's traceback
            raise DownloadError(f"could not download {url}: {getattr(error, 'reason', None) or error}") from None
        actual = sha256_of(part) if sha256 is not None else None
        if actual != sha256:
            raise DataError(
                f"checksum mismatch for {dest.name} downloaded from {url}: "
                f"expected sha256 {sha256}, got {actual}; the partial download was deleted"
            )
    except BaseException:
        # Whatever went wrong (network, Ctrl-C, bad checksum), leave nothing that could be mistaken for data.
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def resolve(rel_path, url, sha256):
    """Path of the corpus file ``rel_path`` (relative to a data folder such as ``multi30k/raw/train.de.gz``).

    With ``RDROP_DATA_DIR`` set, the file must exist there (nothing is downloaded) and match its
    checksum (a different version of the corpus would make results incomparable); otherwise it is
    downloaded once into the cache folder and reused while its checksum still matches.
    """
    local_root = os.environ.get(DATA_DIR_ENV)
    if local_root:
        path = Path(local_root) / rel_path
        if not path.is_file():
            raise DataError(
                f"{DATA_DIR_ENV}={local_root} is set but the file {rel_path} is not in it "
                f"(looked for {path}); unset {DATA_DIR_ENV} to download it from {url}"
            )
        actual = sha256_of(path)
        if actual != sha256:
            raise DataError(
                f"{path} (from {DATA_DIR_ENV}) does not match the expected checksum: "
                f"expected sha256 {sha256}, got {actual}"
            )
        return path
    path = cache_dir() / rel_path
    if path.is_file():
        if sha256_of(path) == sha256:
            return path
        print(f"[data] {path} does not match its sha256 {sha256}; deleting it and downloading again", flush=True)
        path.unlink()  # a corrupt copy must not survive a failed re-download looking complete
    try:
        return download(url, path, sha256)
    except DownloadError as error:
        raise DownloadError(f"{error}\n{local_copy_hint(rel_path)}") from None


@contextmanager
def atomic_path(final):
    """Yield a temporary sibling path for a file or folder; move it to ``final`` only on success."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    _remove(final)
    os.replace(tmp, final)


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


class Stages:
    """Run named preparation stages once: ``stages.run("spm", fn)`` skips ``fn`` if ``spm.done`` exists.

    A stage must write its outputs atomically (``atomic_path``) so that a failure midway leaves
    neither a marker nor a half-written output; the next run redoes that stage and the ones after it.
    """

    def __init__(self, marker_dir, log=print):
        self.marker_dir = Path(marker_dir)
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        self.log = log

    def marker(self, name):
        return self.marker_dir / f"{name}.done"

    def is_done(self, name):
        return self.marker(name).exists()

    def run(self, name, fn, *args, **kwargs):
        if self.is_done(name):
            self.log(f"[stage] {name}: already done, skipped ({self.marker(name)})")
            return None
        self.log(f"[stage] {name}: running")
        start = time.time()
        result = fn(*args, **kwargs)
        self.marker(name).write_text(f"finished in {time.time() - start:.1f}s\n")
        self.log(f"[stage] {name}: done in {time.time() - start:.1f}s")
        return result


def binarize_joined(prefix_dir, dest_dir, src, tgt, workers=1, bin_dir=None, tag="data", train="train",
                    srcdict=None):
    """``fairseq-preprocess`` of ``{train,valid,test}.{src,tgt}`` under ``prefix_dir`` into ``dest_dir``
    with one joined dictionary (what ``--share-all-embeddings`` needs), written atomically.
    ``train`` is the training files' name; ``srcdict`` a joined dictionary to use instead of one built
    on them (data-bins that share a vocabulary, as a model trained on one and fine-tuned on another needs)."""
    bin_dir = Path(bin_dir or fairseq_bin_dir())
    with atomic_path(dest_dir) as dest:
        cmd = [
            str(bin_dir / "fairseq-preprocess"), "--source-lang", src, "--target-lang", tgt,
            "--trainpref", f"{prefix_dir}/{train}", "--validpref", f"{prefix_dir}/valid",
            "--testpref", f"{prefix_dir}/test", "--destdir", str(dest),
            "--joined-dictionary", "--workers", str(workers),
            *(["--srcdict", str(srcdict)] if srcdict else []),
        ]
        print(f"[{tag}] " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
