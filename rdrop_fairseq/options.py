"""The R-Drop options every R-Drop criterion shares, and their start-up checks (no fairseq import)."""
import math
from dataclasses import dataclass, field


@dataclass
class RDropOptions:
    """The R-Drop fields of every R-Drop criterion's config (CLI flags and YAML keys);
    each criterion's config inherits them beside its plain loss's config."""

    rdrop_alpha: float = field(
        default=0.0,
        metadata={"help": "weight alpha of the consistency term (symmetric KL, or its analogue for "
                  "sigmoid and regression heads); 0 disables R-Drop (the paper: 5 for IWSLT/WMT, "
                  "0.7 for CNN/DM, 1 for LM, 0.1-1 for GLUE)"},
    )
    rdrop_passes: int = field(
        default=2,
        metadata={"help": "m, the number of copies of each batch (forward passes); "
                  "the consistency term is averaged over the m(m-1) ordered pairs"},
    )
    rdrop_every: int = field(
        default=1,
        metadata={"help": "k-step R-Drop: apply it on updates u with u % k == 0, "
                  "the plain loss on the others"},
    )
    rdrop_warmup_updates: int = field(
        default=0,
        metadata={"help": "ramp alpha linearly from 0 to --rdrop-alpha over this many updates"},
    )


def validate_rdrop_options(alpha, passes, every, warmup, plain_name="label-smoothed CE"):
    """Reject bad values at startup, naming the command-line option."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"--rdrop-alpha must be a finite number >= 0, got {alpha!r}")
    if passes < 1:
        raise ValueError(f"--rdrop-passes must be >= 1, got {passes}")
    if every < 1:
        raise ValueError(f"--rdrop-every must be >= 1, got {every}")
    if warmup < 0:
        raise ValueError(f"--rdrop-warmup-updates must be >= 0, got {warmup}")
    if alpha > 0 and passes == 1:
        # An error, not a warning: with one pass there is nothing to compare, so the
        # user would silently train a plain model while believing R-Drop is on.
        raise ValueError(
            f"--rdrop-alpha {alpha} needs at least two passes, but --rdrop-passes is 1; "
            f"use --rdrop-passes >= 2, or --rdrop-alpha 0 for plain {plain_name}"
        )
