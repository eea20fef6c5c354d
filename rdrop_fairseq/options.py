"""Start-up checks of the R-Drop options shared by every R-Drop criterion (no fairseq import)."""
import math


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
