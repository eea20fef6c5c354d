"""--no-repeat-ngram-size: the plugin's repair of fairseq's CPU fallback, against the rule written plainly."""
import random

import pytest
import torch
from helpers import tiny_batch, tiny_task, tiny_transformer

from rdrop_fairseq.fixes.ngram_block import banned_next_tokens, no_repeat_ngram, patch_fairseq_ngram_blocking


def plain_banned(prefix, n):
    """The rule by enumeration: every n-gram already in the prefix whose first n-1 tokens end it."""
    seen = {tuple(prefix[i:i + n]) for i in range(len(prefix) - n + 1)}
    tail = tuple(prefix[len(prefix) - n + 1:]) if n > 1 else ()
    return {gram[-1] for gram in seen if gram[:-1] == tail}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_banned_tokens_follow_the_rule(n):
    rng = random.Random(n)
    for _ in range(300):
        prefix = [rng.randrange(5) for _ in range(rng.randrange(0, 12))]
        expected = plain_banned(prefix, n) if len(prefix) >= n - 1 else set()
        assert set(banned_next_tokens(prefix, n)) == expected


def padded_buffer(prefixes, pad=1, width=12):
    tokens = torch.full((len(prefixes), width), pad)
    for row, prefix in enumerate(prefixes):
        tokens[row, : len(prefix)] = torch.tensor(prefix)
    return tokens


def test_fairseq_block_bans_on_the_generated_prefix_not_the_padding():
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    block = NGramRepeatBlock(3, use_extension=False)
    # column 0 is the EOS fairseq starts from; step 5 -> the prefix is columns 0..5
    prefixes = [[2, 7, 8, 9, 7, 8], [2, 5, 5, 5, 6, 5]]
    tokens, step = padded_buffer(prefixes), 5
    lprobs = block(tokens, torch.zeros(2, 12), bsz=1, beam_size=2, step=step)
    assert {t for t in range(12) if lprobs[0, t] == -float("inf")} == {9}  # "7 8" was followed by 9
    assert {t for t in range(12) if lprobs[1, t] == -float("inf")} == set()  # "6 5" never seen before
    # fairseq's own fallback looks at the padding at the end of the buffer and bans nothing
    original = no_repeat_ngram.fairseq_original
    assert not torch.isinf(original(block, tokens, torch.zeros(2, 12), 1, 2, step)).any()


def test_generation_with_blocking_never_repeats_an_ngram():
    from fairseq.sequence_generator import SequenceGenerator

    task = tiny_task()
    model = tiny_transformer(task, dropout=0.0).eval()
    with torch.no_grad():  # make an untrained model loop: favour a few tokens strongly
        model.decoder.output_projection.weight[4:7] *= 30
    sample = tiny_batch(task, bsz=4)

    def hypotheses(n):
        generator = SequenceGenerator([model], task.target_dictionary, beam_size=2, max_len_b=15,
                                      min_len=12, no_repeat_ngram_size=n)
        return [hyps[0]["tokens"].tolist() for hyps in generator.generate([model], sample)]

    def repeats(seq, n):
        grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
        return len(grams) != len(set(grams))

    assert any(repeats(h, 2) for h in hypotheses(0)), "the check needs a model that repeats itself"
    assert not any(repeats(h, 2) for h in hypotheses(2))
    assert not any(repeats(h, 3) for h in hypotheses(3))


def test_repair_is_idempotent():
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    original = no_repeat_ngram.fairseq_original
    patch_fairseq_ngram_blocking()
    assert NGramRepeatBlock._no_repeat_ngram is no_repeat_ngram
    assert no_repeat_ngram.fairseq_original is original
