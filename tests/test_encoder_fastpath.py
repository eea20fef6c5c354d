"""A transformer loaded from a state dict encodes like the one that was saved (fairseq 0.12.2 with
torch >= 2.0 otherwise fails with "Mask Type should be defined"; see encoder_fastpath.py)."""
import torch

import rdrop_fairseq  # noqa: F401  (applies the patch, as --user-dir does)
from helpers import tiny_batch, tiny_transformer


def test_loaded_encoder_matches_the_saved_one(task):
    trained = tiny_transformer(task, seed=0).eval()
    loaded = tiny_transformer(task, seed=1)
    loaded.load_state_dict(trained.state_dict())
    loaded.eval()
    net_input = tiny_batch(task)["net_input"]
    # a left-padded source, as fairseq batches them: the fast path fails only with a padding mask
    net_input["src_tokens"][-1, :2] = task.source_dictionary.pad()
    net_input["src_lengths"][-1] -= 2
    src = (net_input["src_tokens"], net_input["src_lengths"])
    with torch.no_grad():
        expect = trained.encoder(*src)["encoder_out"][0]
        got = loaded.encoder(*src)["encoder_out"][0]
    assert not torch.equal(tiny_transformer(task, seed=1).eval().encoder(*src)["encoder_out"][0], expect)
    torch.testing.assert_close(got, expect)
