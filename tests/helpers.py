"""Helpers the tests import: the repo's paths, the data folder, the fairseq CLI runner, a tiny real
fairseq transformer with its task and batches, one seeded criterion step, the paper's KL written
plainly, and ChildTuning's tiny setup. pytest.ini puts this folder and the repo root on sys.path; the fixtures are in conftest.py."""
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's fairseq-train etc.
USER_DIR = str(REPO / "rdrop_fairseq")


def data_path():
    """Where the data folder is looked for: RDROP_DATA_DIR, else ../shared/data beside the repo (as
    CI lays it out). An empty RDROP_DATA_DIR counts as unset (Path("") would be the working directory)."""
    return Path(os.environ.get("RDROP_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


def data_dir():
    """The data folder (``data_path()``), or None if it is absent."""
    path = data_path()
    return path if path.is_dir() else None


NO_DATA = "no data folder: set RDROP_DATA_DIR or place shared/data beside the repo"


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


def criterion_step(criterion, model, sample, seed=123):
    """One seeded forward/backward of ``criterion``: (loss, sample size, logging output, the gradients
    of the parameters that got one)."""
    model.zero_grad()
    torch.manual_seed(seed)
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    return loss.detach(), sample_size, log, [p.grad.clone() for p in model.parameters() if p.grad is not None]


# ---- a small random BERT in Hugging Face's layout (config.json, vocab.txt, model.safetensors) ----
BERT_SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert(folder, words=(), layers=1, hidden=32, heads=2, ffn=64, max_positions=64, seed=0):
    """A randomly initialised BERT with BERT's special tokens, single characters (a-z, 0-9, ASCII
    punctuation, each also as a ``##`` continuation) and ``words``: what convert_bert.py converts,
    without the 90 MB package. Its weights are N(0, 0.5) (LayerNorms around 1), large enough that a
    wrong mapping shows in the hidden states."""
    import json
    import string

    from recipes.classification.convert_bert import write_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = BERT_SPECIALS + chars + ["##" + c for c in chars]
    pieces += [w for w in dict.fromkeys(words) if w not in pieces]
    (folder / "vocab.txt").write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    config = dict(architectures=["BertModel"], model_type="bert", hidden_act="gelu", hidden_size=hidden,
                  num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn,
                  max_position_embeddings=max_positions, type_vocab_size=2, vocab_size=len(pieces),
                  layer_norm_eps=1e-12, pad_token_id=0, position_embedding_type="absolute")
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, mean=0.0):
        return torch.randn(*shape, generator=g) * 0.5 + mean

    w = {"embeddings.word_embeddings.weight": rand(len(pieces), hidden),
         "embeddings.position_embeddings.weight": rand(max_positions, hidden),
         "embeddings.token_type_embeddings.weight": rand(2, hidden),
         "embeddings.LayerNorm.weight": rand(hidden, mean=1.0), "embeddings.LayerNorm.bias": rand(hidden),
         "embeddings.position_ids": torch.arange(max_positions)[None],
         "pooler.dense.weight": rand(hidden, hidden), "pooler.dense.bias": rand(hidden)}
    shapes = {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
              "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
              "intermediate.dense": (ffn, hidden), "output.dense": (hidden, ffn)}
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for name, shape in shapes.items():
            w[p + name + ".weight"], w[p + name + ".bias"] = rand(*shape) / shape[1] ** 0.5 * 2, rand(shape[0])
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + name + ".weight"], w[p + name + ".bias"] = rand(hidden, mean=1.0), rand(hidden)
    write_safetensors(folder / "model.safetensors", w)
    return folder


def bert_hidden_states(folder, input_ids, token_types=None, eps=None):
    """BERT's final hidden states (B, T, C), written plainly from its config.json and weights: the
    independent reference the conversion is checked against. ``input_ids``: (B, T) BERT ids, right
    padded with [PAD] (0); ``eps``: the LayerNorm epsilon (default: the config's)."""
    import json
    import math

    from recipes.classification.convert_bert import read_safetensors

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    w = {k: v.float() for k, v in read_safetensors(folder / "model.safetensors").items()}
    eps = cfg.get("layer_norm_eps", 1e-12) if eps is None else eps
    batch, length = input_ids.shape
    types = torch.zeros_like(input_ids) if token_types is None else token_types

    def norm(x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], w[name + ".weight"], w[name + ".bias"], eps)

    x = (w["embeddings.word_embeddings.weight"][input_ids] + w["embeddings.position_embeddings.weight"][:length]
         + w["embeddings.token_type_embeddings.weight"][types])
    x = norm(x, "embeddings.LayerNorm")
    heads = cfg["num_attention_heads"]
    size = cfg["hidden_size"] // heads
    masked = (input_ids == cfg.get("pad_token_id", 0))[:, None, None, :]  # BERT's attention mask: keys only
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def dense(x, name):
            return x @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (dense(x, "attention.self." + n).view(batch, length, heads, size).transpose(1, 2)
                   for n in ("query", "key", "value"))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(size)).masked_fill(masked, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, heads * size)
        x = norm(x + dense(attended, "attention.output.dense"), p + "attention.output.LayerNorm")
        x = norm(x + dense(torch.nn.functional.gelu(dense(x, "intermediate.dense")), "output.dense"),
                 p + "output.LayerNorm")
    return x


# ---- ChildTuning's tests: a tiny transformer, its criteria, the parsed config, the mask command ----
CT_TINY = (
    "--arch transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 "
    "--decoder-embed-dim 32 --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 "
    "--encoder-attention-heads 2 --decoder-attention-heads 2 --share-all-embeddings"
).split()
LS = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
RDROP = ["--criterion", "label_smoothed_cross_entropy_with_rdrop", "--label-smoothing", "0.1", "--rdrop-alpha", "1"]


def childtuning_cfg(*extra):
    """fairseq-train's config for CT_TINY with --optimizer childtuning_adam and ``extra``."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, ["unused-data", *CT_TINY, "--optimizer", "childtuning_adam",
                                                "--lr", "1e-3", "--cpu", *extra])
    return convert_namespace_to_omegaconf(args)


def childtuning_mask(data, ckpt, out, *extra):
    """``python -m rdrop_fairseq.childtuning_mask`` for CT_TINY (mode D, p 0.3) from ``ckpt`` to ``out``;
    returns its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "rdrop_fairseq.childtuning_mask", str(data), "--user-dir", USER_DIR, *CT_TINY, *LS,
         "--max-tokens", "1500", "--optimizer", "childtuning_adam", "--childtuning-mode", "D",
         "--childtuning-reserve-p", "0.3", "--childtuning-mask", str(out), "--restore-file", str(ckpt),
         *extra, "--cpu", "--seed", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout
