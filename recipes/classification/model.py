"""The small RoBERTa-architecture encoder of the CPU evidence: its size, and the fairseq flags
that build it. Shared by pre-training (pretrain.py, masked_lm) and fine-tuning (run.py), whose
checkpoints must agree on every shape."""

# 2 layers, d = 128: what a 2-core CPU trains in minutes. lr and batch are fine-tuning's.
SMALL = dict(layers=2, embed_dim=128, ffn_dim=512, heads=4, dropout=0.1, attention_dropout=0.1,
             lr=5e-4, warmup_ratio=0.06, batch_size=32, weight_decay=0.1, max_positions=128, nwords=10000)
# the tests' size
TINY = dict(SMALL, layers=1, embed_dim=32, ffn_dim=64, heads=2, batch_size=16, nwords=2000)


def model_flags(cfg):
    return ["--arch", "roberta", "--encoder-layers", str(cfg["layers"]),
            "--encoder-embed-dim", str(cfg["embed_dim"]), "--encoder-ffn-embed-dim", str(cfg["ffn_dim"]),
            "--encoder-attention-heads", str(cfg["heads"]), "--max-positions", str(cfg["max_positions"]),
            "--dropout", str(cfg["dropout"]), "--attention-dropout", str(cfg["attention_dropout"])]
