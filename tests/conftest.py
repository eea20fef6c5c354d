"""Shared fixtures: a tiny real fairseq transformer and batches, the data folder, CLI runner."""
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's fairseq-train etc.
USER_DIR = str(REPO / "rdrop_fairseq")


def data_dir():
    """RDROP_DATA_DIR, else ../shared/data beside the repo (as CI lays it out); None if absent.
    An empty RDROP_DATA_DIR counts as unset (Path("") would be the working directory)."""
    path = Path(os.environ.get("RDROP_DATA_DIR") or REPO.parent / "shared" / "data").resolve()
    return path if path.is_dir() else None


NO_DATA = "no data folder: set RDROP_DATA_DIR or place shared/data beside the repo"


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


def run_cli(tool, *args, cwd=None, env=None, check=True):
    """Run a fairseq console script of this venv; return its combined output."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env or {}))
    proc = subprocess.run(
        [str(BIN / tool), *map(str, args)], cwd=cwd, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc.stdout


# ---- end-to-end runs of the fairseq command-line tools -------------------------------
COMMON = "--optimizer adam --lr 1e-3 --cpu --seed 1 --log-format simple --log-interval 1 --no-progress-bar".split()


def last_train_stats(log):
    """Key/value pairs of the end-of-epoch train line (simple or hydra log format)."""
    lines = [l for l in log.splitlines() if "| train |" in l or "[train][INFO]" in l]
    assert lines, log[-3000:]
    return dict(re.findall(r"(\w+) ([-\d.]+)", lines[-1].split("epoch", 1)[1]))


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


def tiny_task(vocab=40):
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}")
    return TranslationTask(TranslationConfig(), d, d)


def tiny_transformer(task, dropout=0.3, seed=0):
    from fairseq.models.transformer import TransformerModel, base_architecture

    args = Namespace(
        arch="transformer", encoder_layers=1, decoder_layers=1, encoder_embed_dim=16,
        decoder_embed_dim=16, encoder_ffn_embed_dim=32, decoder_ffn_embed_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, dropout=dropout,
        attention_dropout=0.0, activation_dropout=0.0, share_all_embeddings=True,
        max_source_positions=64, max_target_positions=64,
    )
    base_architecture(args)
    torch.manual_seed(seed)
    return TransformerModel.build_model(args, task)


def tiny_batch(task, bsz=4, src_len=7, tgt_len=6, seed=1):
    """A translation batch with right-padded targets (last sentence shorter)."""
    d = task.target_dictionary
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(d.nspecial, len(d), (bsz, src_len), generator=g)
    tgt = torch.randint(d.nspecial, len(d), (bsz, tgt_len), generator=g)
    tgt[:, -1] = d.eos()
    tgt[-1, 3:] = d.pad()
    tgt[-1, 2] = d.eos()
    prev = torch.cat([torch.full((bsz, 1), d.eos()), tgt[:, :-1]], 1)
    prev[-1, 3:] = d.pad()
    return {
        "id": torch.arange(bsz),
        "net_input": {
            "src_tokens": src,
            "src_lengths": torch.full((bsz,), src_len),
            "prev_output_tokens": prev,
        },
        "target": tgt,
        "ntokens": int(tgt.ne(d.pad()).sum()),
        "nsentences": bsz,
    }


def copies_of(x, m):
    """The m copies in an interleaved tensor, as the layout defines them: copy k of row b
    is row b*m + k of dim 0, so copy k is x[k::m]."""
    return [x[k::m] for k in range(m)]


def paper_kl(copies, pad_mask):
    """The KL term as the R-Drop authors' snippet writes it (F.kl_div both ways, padding
    masked, summed), generalised to m copies: 1/(m(m-1)) * sum over ordered pairs.
    copies: the m copies' log-probs, each (..., V) over the same rows; pad_mask: (...)."""
    import torch.nn.functional as F

    m = len(copies)
    total = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                # kl_div(input=log q, target=log p, log_target) = sum p (log p - log q) = KL(p||q)
                kl = F.kl_div(copies[j], copies[i], reduction="none", log_target=True).sum(-1)
                total = total + kl.masked_fill(pad_mask.reshape(kl.shape), 0.0).sum()
    return total / (m * (m - 1))


@pytest.fixture
def task():
    return tiny_task()
