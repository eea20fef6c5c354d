"""The named settings of the baseline-vs-R-Drop recipes (classification/run.py,
translation/multi30k/run.py): the command-line overrides every recipe takes, and the record that
keeps a work folder to the settings it was made with."""
import json


def apply_overrides(cfg, args, parser):
    """A copy of the setting ``cfg`` with ``--max-epoch`` and ``--rdrop-alpha`` from ``args`` where
    given; a bad value is a ``parser.error`` naming the option."""
    cfg = dict(cfg)
    if args.max_epoch is not None:
        if args.max_epoch < 1:
            parser.error(f"--max-epoch must be >= 1, got {args.max_epoch}")
        cfg["max_epoch"] = args.max_epoch
    if args.rdrop_alpha is not None:
        if not args.rdrop_alpha > 0:
            parser.error(f"--rdrop-alpha must be > 0, got {args.rdrop_alpha}")
        cfg["rdrop_alpha"] = args.rdrop_alpha
    return cfg


def check_same_config(workdir, cfg):
    """Refuse to resume a work folder made with other settings (its finished stages would be reused);
    a new folder records ``cfg`` in its config.json."""
    saved = workdir / "config.json"
    if saved.exists():
        old = json.loads(saved.read_text())
        if old != json.loads(json.dumps(cfg)):
            raise SystemExit(
                f"{workdir} was prepared with other settings ({saved}: {old}); "
                f"pass another --workdir or delete that folder"
            )
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(cfg))
