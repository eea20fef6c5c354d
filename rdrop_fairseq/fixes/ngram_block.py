"""A working ``--no-repeat-ngram-size`` for fairseq's generator without the CUDA extension.

fairseq 0.12's Python fallback (``NGramRepeatBlock._no_repeat_ngram``, used on CPU and whenever
``ngram_repeat_block_cuda`` is not built, as in the fairseq-fixed wheel) compares n-grams against
the last n-1 entries of the whole padded token buffer instead of the last n-1 *generated* tokens,
so it never bans anything (fairseq issues #4709, #5206).  The paper's summarization decoding
(``--no-repeat-ngram-size 3``) then silently runs without trigram blocking.

The rule, as the CUDA kernel and fairseq <= 0.10 apply it: with prefix ``t_0 .. t_step`` (``t_0``
the BOS/EOS fairseq starts from), ban every token ``t_{i+n-1}`` whose preceding n-1 tokens
``t_i .. t_{i+n-2}`` equal the last n-1 tokens ``t_{step-n+2} .. t_step``.
"""
import logging
import math
from typing import List

import torch

from ..switches import NO_NGRAM_FIX

logger = logging.getLogger(__name__)


def banned_next_tokens(prefix: List[int], n: int) -> List[int]:
    """Tokens that would repeat an n-gram of ``prefix`` if generated next (in order of first use)."""
    if n < 1 or len(prefix) < n - 1:
        return []
    tail = prefix[len(prefix) - (n - 1):]
    banned: List[int] = []
    for i in range(len(prefix) - n + 1):
        if prefix[i:i + n - 1] == tail and prefix[i + n - 1] not in banned:
            banned.append(prefix[i + n - 1])
    return banned


def no_repeat_ngram(self, tokens, lprobs, bsz: int, beam_size: int, step: int):
    """Drop-in for ``NGramRepeatBlock._no_repeat_ngram``: ``tokens`` is the padded buffer whose
    columns ``0..step`` hold the prefix; sets the banned tokens' ``lprobs`` to -inf in place."""
    n = self.no_repeat_ngram_size
    if step + 2 - n < 0:  # fewer than n-1 generated tokens: nothing can repeat yet
        return lprobs
    prefixes: List[List[int]] = tokens[:, : step + 1].cpu().tolist()
    for row, prefix in enumerate(prefixes):
        banned = banned_next_tokens(prefix, n)
        if banned:
            lprobs[row, torch.tensor(banned, dtype=torch.long, device=lprobs.device)] = -math.inf
    return lprobs


def patch_fairseq_ngram_blocking():
    """Replace the broken fallback on fairseq's class; False where fairseq lacks the module.
    Logs at DEBUG what it replaces."""
    try:
        from fairseq.ngram_repeat_block import NGramRepeatBlock
    except ImportError:
        return False
    if NGramRepeatBlock._no_repeat_ngram is not no_repeat_ngram:
        # kept so that tests can show the original's failure next to the fix
        no_repeat_ngram.fairseq_original = NGramRepeatBlock._no_repeat_ngram
        NGramRepeatBlock._no_repeat_ngram = no_repeat_ngram
        logger.debug(
            "rdrop_fairseq: fairseq's NGramRepeatBlock._no_repeat_ngram (the non-CUDA "
            "--no-repeat-ngram-size, which bans nothing: fairseq #4709) replaced by %s.%s "
            "(%s=1 skips this)", __name__, no_repeat_ngram.__name__, NO_NGRAM_FIX,
        )
    return True
