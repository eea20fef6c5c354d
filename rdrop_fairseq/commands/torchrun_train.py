"""``fairseq-train`` under ``torchrun``, each process told its rank (works on CPU).

    torchrun --nproc_per_node 2 -m rdrop_fairseq.torchrun_train DATA ... --cpu \\
        --distributed-backend gloo --ddp-backend legacy_ddp

fairseq 0.12 reads torchrun's environment itself only on GPU: its
``_infer_torch_distributed_launch_init`` takes ``rank % torch.cuda.device_count()``,
which divides by zero without CUDA. Passing ``--distributed-init-method env://``
skips that inference, but then every process keeps the default rank 0. This
launcher appends the four options torchrun's environment determines
(``--distributed-init-method env:// --distributed-world-size $WORLD_SIZE
--distributed-rank $RANK --distributed-no-spawn``) and ``--device-id
$LOCAL_RANK``, then runs fairseq's own ``fairseq_cli.train.cli_main``: the
training path is fairseq's, unchanged.
"""
import logging
import os
import sys

SET_HERE = ("--distributed-init-method", "--distributed-world-size", "--distributed-rank",
            "--distributed-no-spawn", "--device-id")


def torchrun_argv(argv, environ):
    """``argv`` (without the program name) plus the options torchrun's environment fixes."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k not in environ]
    if missing:
        raise SystemExit(
            f"rdrop_fairseq.torchrun_train: {', '.join(missing)} not set; start it with "
            "torchrun --nproc_per_node N -m rdrop_fairseq.torchrun_train DATA ..."
        )
    given = [a.split("=", 1)[0] for a in argv if a.split("=", 1)[0] in SET_HERE]
    if given:
        # argparse would let the last occurrence win silently; a rank or world size that
        # disagrees with torchrun's hangs the rendezvous instead of failing.
        raise SystemExit(
            f"rdrop_fairseq.torchrun_train sets {', '.join(sorted(set(given)))} from "
            "torchrun's environment; remove it from the command line"
        )
    return [*argv,
            "--distributed-init-method", "env://",
            "--distributed-world-size", environ["WORLD_SIZE"],
            "--distributed-rank", environ["RANK"],
            "--distributed-no-spawn",
            "--device-id", environ["LOCAL_RANK"]]


def main():
    sys.argv = [sys.argv[0], *torchrun_argv(sys.argv[1:], os.environ)]
    # Importing the plugin imported fairseq, which installs a bare root log handler;
    # without removing it, fairseq_cli.train's logging.basicConfig (its line format, on
    # stdout) would be a no-op and the logs would not read like fairseq-train's.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    from fairseq_cli.train import cli_main

    cli_main()
