"""ChildTuning's gradient masks (Xu et al., EMNLP 2021) in plain PyTorch.

ChildTuning updates only a "child network" of the pre-trained model by masking the gradient:

- ChildTuning-F (task-free): every update draws, for every masked entry, keep ~ Bernoulli(p)
  and uses g * keep / p, so E[g * keep / p] = g (Var = g^2 (1 - p) / p per entry).
- ChildTuning-D (task-driven): F = mean over the training batches of g^2 (the diagonal
  Fisher, one pass with the pre-trained model), keep the entries at or above the (1 - p)
  percentile over all masked parameters, and use that fixed mask without rescaling.

Which parameters are masked is a name selection (``select``; the patterns name fairseq's
parameters). The plugin's optimizer ``childtuning_adam`` and its mask command call these functions.
"""
import hashlib
import re

import torch

# Name patterns (re.search) for fairseq parameter names.
# "layers": every numbered transformer block, encoder and decoder
#   (encoder.layers.N., decoder.layers.N., encoder.sentence_encoder.layers.N. in RoBERTa),
#   the fairseq spelling of the official code's `'layer' in name` on a BERT (which picks
#   bert.encoder.layer.N.* and nothing else: not embeddings, pooler or classifier).
PATTERNS = {
    "layers": r"(^|\.)layers\.\d+\.",
    "encoder_layers": r"(^|\.)encoder\.(sentence_encoder\.)?layers\.\d+\.",
    "all": r"",
}
# What the official code (alibaba/AliceMind, ChildTuning) masks: ChildTuning-F masks every
# parameter with a gradient (ChildTuningAdamW applies the Bernoulli mask in all groups),
# ChildTuning-D only the Fisher-ranked 'layer' parameters (calculate_fisher).
OFFICIAL = {"F": "all", "D": "layers"}


def resolve_pattern(mode, params, regex=None):
    """The regex that picks the masked parameters, from the --childtuning-params keyword
    (or 'official') and an optional --childtuning-params-regex that overrides it."""
    if regex:
        try:
            re.compile(regex)
        except re.error as e:
            raise ValueError(f"--childtuning-params-regex {regex!r} is not a valid regex: {e}") from e
        return regex
    key = OFFICIAL[mode] if params == "official" else params
    if key not in PATTERNS:
        raise ValueError(
            f"--childtuning-params {params!r}: choose one of official, {', '.join(PATTERNS)}"
        )
    return PATTERNS[key]


def select(names, pattern):
    """Which of ``names`` the pattern masks (re.search; '' masks all)."""
    rx = re.compile(pattern)
    return [bool(rx.search(n)) for n in names]


def check_reserve_p(p):
    if not (0.0 < float(p) <= 1.0):
        raise ValueError(f"--childtuning-reserve-p must be in (0, 1], got {p}")


# ---- ChildTuning-F ----------------------------------------------------------------------
def step_seed(seed, step, index=0):
    """A 63-bit seed from (seed, update number, parameter index): the same on every worker
    and after a resume, unrelated across nearby triples (unlike seed + step)."""
    key = f"childtuning:{int(seed)}:{int(step)}:{int(index)}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def draw_keep(numel, p, generator, device=None):
    """Bernoulli(p) keep mask of ``numel`` entries from ``generator`` (flat, bool)."""
    return torch.rand(numel, generator=generator, device=device) < p


def mask_gradient_(grad, keep, p):
    """grad <- grad * keep / p in place (keep: bool with grad's numel entries)."""
    flat = grad.view(-1)
    flat.mul_(keep.to(flat.dtype))
    if p != 1.0:
        flat.div_(p)
    return grad


# ---- ChildTuning-D ----------------------------------------------------------------------
def clip_tensor_norm(grad, max_norm):
    """torch.nn.utils.clip_grad_norm_ on one tensor, as the official Fisher pass calls it on
    each parameter separately: g * min(1, max_norm / (||g|| + 1e-6)); max_norm <= 0: g."""
    if max_norm is None or max_norm <= 0:
        return grad
    coef = (max_norm / (grad.float().norm() + 1e-6)).clamp(max=1.0)
    return grad * coef.to(grad.dtype)


class FisherAccumulator:
    """Sum over batches of the (clipped) squared gradient; mean = sum / batches.

    ``add`` takes the gradient of one batch's mean loss per parameter name. Over several
    workers, all-reduce ``sums`` and ``batches`` (both summable) before ``mean``.
    """

    def __init__(self, clip_norm=1.0):
        self.clip_norm = clip_norm
        self.sums = {}
        self.batches = 0

    def add(self, grads):
        for name, g in grads.items():
            sq = clip_tensor_norm(g.detach().float(), self.clip_norm).pow(2)
            if name in self.sums:
                self.sums[name].add_(sq)
            else:
                self.sums[name] = sq.clone()
        self.batches += 1

    def mean(self):
        if self.batches == 0:
            raise ValueError("no training batch was seen: the Fisher information is undefined")
        return {n: s / self.batches for n, s in self.sums.items()}


def top_p_threshold(fisher, p):
    """numpy's default (linear) percentile at 100 (1 - p) over every entry of ``fisher``
    (a dict of tensors), as (v_lo, v_hi, frac) order statistics, exact (no float rounding):
    the percentile is v_lo + frac (v_hi - v_lo)."""
    check_reserve_p(p)
    values = torch.cat([f.reshape(-1).float() for f in fisher.values()])
    n = values.numel()
    pos = (1.0 - p) * (n - 1)
    lo = int(pos)  # floor, pos >= 0
    hi = min(lo + 1, n - 1)
    v_lo = values.kthvalue(lo + 1).values.item()
    v_hi = values.kthvalue(hi + 1).values.item() if hi != lo else v_lo
    return v_lo, v_hi, pos - lo


def top_p_masks(fisher, p):
    """Keep the entries whose Fisher is >= the (1 - p) percentile (the official rule, ties
    at the threshold kept); returns ({name: bool mask}, threshold as a float)."""
    v_lo, v_hi, frac = top_p_threshold(fisher, p)
    # F >= v_lo + frac (v_hi - v_lo), with v_lo <= that <= v_hi and no entry strictly
    # between v_lo and v_hi: the same as F > v_lo when the percentile lies above v_lo.
    above = frac > 0 and v_hi > v_lo
    masks = {n: (f > v_lo) if above else (f >= v_lo) for n, f in fisher.items()}
    return masks, v_lo + frac * (v_hi - v_lo)


# ---- storage ------------------------------------------------------------------------------
_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_bits(mask):
    """A bool tensor as uint8, 8 entries a byte (checkpoints hold the D mask this way)."""
    flat = mask.reshape(-1).to(torch.uint8).cpu()
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) * _BITS).sum(1, dtype=torch.uint8)


def unpack_bits(packed, shape):
    numel = 1
    for s in shape:
        numel *= int(s)
    bits = packed.reshape(-1, 1).bitwise_and(_BITS).ne(0).reshape(-1)
    if bits.numel() < numel:
        raise ValueError(f"packed mask has {bits.numel()} bits for {numel} entries")
    return bits[:numel].reshape(tuple(shape))
