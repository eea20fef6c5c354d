"""Average the weights of the last N fairseq checkpoints (the usual final step of the WMT recipes).

fairseq ships this as scripts/average_checkpoints.py in its source tree, but the pip package does not
install it, so this is our own version with the same selection rules:
  --num-epoch-checkpoints N   the N highest-numbered checkpoint<EPOCH>.pt in the folder
  --num-update-checkpoints N  the N highest-numbered checkpoint_<EPOCH>_<UPDATE>.pt
  --checkpoint-upper-bound K  ignore checkpoints numbered above K
  --inputs A.pt B.pt ...      or name the files yourself
The output is the newest selected checkpoint with its "model" weights replaced by the elementwise
mean  theta = (1/N) sum_i theta_i  (accumulated in float64, stored in each tensor's own dtype).

Usage: python recipes/common/average_checkpoints.py --inputs SAVE_DIR --num-epoch-checkpoints 5 \
           --output SAVE_DIR/checkpoint_avg5.pt
"""

import argparse
import re
import sys
from collections import OrderedDict
from pathlib import Path


def load_own_checkpoint(path):
    import torch

    # fairseq checkpoints pickle their config (argparse Namespace / omegaconf objects), which torch>=2.6's
    # default weights_only=True loader refuses.  Unpickling can run arbitrary code, so this is only
    # acceptable for checkpoints you trained yourself: never point this script at downloaded files.
    return torch.load(path, map_location="cpu", weights_only=False)


def average_state_dicts(state_dicts):
    """Elementwise mean of same-keyed state dicts; non-float tensors must agree and are copied."""
    import torch

    if not state_dicts:
        raise ValueError("nothing to average")
    keys = list(state_dicts[0])
    averaged = OrderedDict()
    for index, state in enumerate(state_dicts[1:], start=1):
        if list(state) != keys:
            missing, extra = set(keys) - set(state), set(state) - set(keys)
            raise KeyError(
                f"checkpoint #{index} has different parameters than #0 "
                f"(missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}); are they from one run?"
            )
    for key in keys:
        tensors = [state[key] for state in state_dicts]
        first = tensors[0]
        if not torch.is_tensor(first) or not torch.is_floating_point(first):
            # e.g. fairseq's "version" buffers: averaging an integer is meaningless, they must agree.
            if any(not _same(first, other) for other in tensors[1:]):
                raise ValueError(f"non-float entry {key!r} differs between checkpoints")
            averaged[key] = first
            continue
        total = torch.zeros_like(first, dtype=torch.float64)
        for tensor in tensors:
            if tensor.shape != first.shape:
                raise ValueError(f"{key}: shape {tuple(tensor.shape)} vs {tuple(first.shape)}")
            total += tensor.to(torch.float64)
        averaged[key] = (total / len(tensors)).to(first.dtype)
    return averaged


def _same(a, b):
    import torch

    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.shape == b.shape and bool(torch.equal(a, b))
    return a == b


def last_checkpoints(folder, n, update_based=False, upper_bound=None):
    """The ``n`` highest-numbered epoch (or update) checkpoints in ``folder``, newest first."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt" if update_based else r"checkpoint(\d+)\.pt")
    found = []
    for path in Path(folder).iterdir():
        match = pattern.fullmatch(path.name)
        if match and (upper_bound is None or int(match.group(1)) <= upper_bound):
            found.append((int(match.group(1)), path))
    if len(found) < n:
        kind = "checkpoint_<epoch>_<update>.pt" if update_based else "checkpoint<epoch>.pt"
        raise FileNotFoundError(
            f"{folder}: found {len(found)} {kind} files"
            f"{'' if upper_bound is None else f' numbered <= {upper_bound}'}, need {n} "
            f"(did training keep them? see --keep-last-epochs / --keep-interval-updates)"
        )
    return [path for _, path in sorted(found, reverse=True)[:n]]


def average_checkpoints(paths):
    """The first checkpoint's state with ``model`` replaced by the mean over all ``paths``."""
    states = [load_own_checkpoint(p) for p in paths]
    for path, state in zip(paths, states):
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    new_state = states[0]
    new_state["model"] = average_state_dicts([s["model"] for s in states])
    return new_state


def main(argv=None):
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", required=True, nargs="+",
                        help="checkpoint files, or one folder with --num-*-checkpoints")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, help="average the last N checkpoint<EPOCH>.pt")
    group.add_argument("--num-update-checkpoints", type=int,
                       help="average the last N checkpoint_<EPOCH>_<UPDATE>.pt")
    parser.add_argument("--checkpoint-upper-bound", type=int,
                        help="with --num-*-checkpoints: ignore checkpoints numbered above this")
    args = parser.parse_args(argv)

    num = args.num_epoch_checkpoints or args.num_update_checkpoints
    if num is not None:
        if num <= 0:
            parser.error(f"--num-*-checkpoints must be positive, got {num}")
        if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
            parser.error(f"--num-*-checkpoints needs --inputs to be one folder, got {args.inputs}")
        paths = last_checkpoints(args.inputs[0], num, args.num_update_checkpoints is not None,
                                 args.checkpoint_upper_bound)
    else:
        if args.checkpoint_upper_bound is not None:
            parser.error("--checkpoint-upper-bound needs --num-epoch-checkpoints or --num-update-checkpoints")
        paths = [Path(p) for p in args.inputs]
        for path in paths:
            if not path.is_file():
                parser.error(f"--inputs: {path} is not a file")
    print("averaging: " + " ".join(str(p) for p in paths), flush=True)
    state = average_checkpoints(paths)
    output = Path(args.output)
    part = output.with_name(output.name + ".part")
    torch.save(state, part)
    part.replace(output)  # never leave a half-written checkpoint under the final name
    print(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())
