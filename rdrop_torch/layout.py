"""How the m copies of a batch are laid out: interleaved, each row repeated m times in place.

Copy k of batch row b is row b * m + k of every batch-major tensor (``repeat_interleave``),
NOT the copy-major ``[x; x]`` (copy k = rows k*B .. (k+1)*B - 1). fairseq sorts a batch by
source length, longest first, and its LSTM encoder packs the batch with
``pack_padded_sequence(..., enforce_sorted=True)``; ``[x; x]`` restarts the order at row B
and crashes it ("lengths array must be sorted in decreasing order"), while repeating each
row in place keeps the lengths non-increasing. Every consumer of the model output (the
losses, targets, padding masks, accuracy) reads copy k of row b at b * m + k of dim 0.
"""
import torch
from torch import Tensor


def duplicate_net_input(net_input, num_copies, batch_size):
    """A NEW dict of model inputs (fairseq's ``net_input``, or a Hugging Face-style batch of
    ``input_ids``, ``attention_mask``, ...) with every batch-major tensor's rows each repeated
    ``num_copies`` times in place (row b becomes rows b*m .. b*m + m - 1).

    Tensors without a batch dimension of size B, non-tensor values and None are passed
    through; nested dicts are handled the same way. The caller's dict and tensors are
    never modified (fairseq reuses samples, e.g. on OOM retries).
    """

    def dup(value):
        if torch.is_tensor(value) and value.dim() > 0 and value.size(0) == batch_size:
            return value.repeat_interleave(num_copies, dim=0)
        if isinstance(value, dict):
            return {k: dup(v) for k, v in value.items()}
        return value

    return {k: dup(v) for k, v in net_input.items()}


def check_copies(scores: Tensor, target: Tensor, num_passes: int, what: str = "logits") -> None:
    """Clear errors for inputs that do not hold m interleaved copies along dim 0.

    scores: (m*B, *rest, V); target: one copy (B, *rest) or all copies (m*B, *rest).
    """
    m = num_passes
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"num_passes must be a positive int, got {m!r}")
    if scores.dim() < 2 or not scores.is_floating_point():
        raise ValueError(f"{what} must be a float tensor (m*B, ..., V), got "
                         f"{tuple(scores.shape)} {scores.dtype}")
    if scores.size(0) % m != 0:
        raise ValueError(f"{what} have {scores.size(0)} rows in dim 0, not divisible by "
                         f"num_passes={m} (copies are interleaved along dim 0)")
    rest = tuple(scores.shape[1:-1])
    one, every = (scores.size(0) // m, *rest), tuple(scores.shape[:-1])
    if tuple(target.shape) not in (one, every):
        raise ValueError(f"target has shape {tuple(target.shape)}, expected {one} (one copy) or "
                         f"{every} (all {m} copies, interleaved) for {what} of shape "
                         f"{tuple(scores.shape)}")
