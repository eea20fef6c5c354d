"""What a shorter run would have given: each epoch budget N of a finished --keep-all-epochs run.

    python recipes/translation/multi30k/horizons.py --workdir work/multi30k-main --seed 1 \
        --epochs 16,18,20,24 [--bleu valid,test]

The learning-rate schedule (inverse_sqrt) does not depend on --max-epoch, so the first N epochs of a
longer run ARE a run with --max-epoch N (same seed, same machine). For each N and each run this prints
the checkpoint the recipe's rule would pick (lowest validation loss among epochs <= N), whether the
baseline had stopped improving by N (its best epoch before N), and the BLEU of that checkpoint on the
validation set (for choosing N) and on test (for reporting only), scored as run.py scores test.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from recipes.translation.multi30k.pipeline import RUNS, best_epoch_stats, generate  # noqa: E402
from recipes.translation.multi30k.run import score  # noqa: E402
from recipes.common.fairseq_bin import fairseq_bin_dir  # noqa: E402
from recipes.common.plot import read_valid_stats  # noqa: E402


def pick(stats, horizon):
    """The recipe's selection rule restricted to the first ``horizon`` epochs."""
    seen = [s for s in stats if s["epoch"] <= horizon]
    if not seen or seen[-1]["epoch"] != horizon:
        raise SystemExit(f"the run has no validation line for epoch {horizon}")
    return best_epoch_stats(seen)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", required=True, help="comma-separated epoch budgets N")
    parser.add_argument("--bleu", default="valid", help="splits to translate: valid, test or valid,test")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    cfg = json.loads((workdir / "config.json").read_text())
    seed_dir = workdir / "runs" / f"seed{args.seed}"
    bin_dir = fairseq_bin_dir()
    tokenize = "none" if cfg.get("text") == "tok" else "13a"
    splits = [s for s in args.bleu.split(",") if s]
    refs = {s: (workdir / "raw" / f"{s}.en").read_text(encoding="utf-8").splitlines() for s in splits}
    out = workdir / "horizons" / f"seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for horizon in (int(n) for n in args.epochs.split(",")):
        row = {"N": horizon}
        for run in RUNS:
            best = pick(read_valid_stats(seed_dir / run / "train.log"), horizon)
            row[run] = dict(best_epoch=best["epoch"], valid_loss=best["valid_loss"])
            checkpoint = seed_dir / run / f"checkpoint{best['epoch']}.pt"
            for split in splits:
                hyp = out / f"{run}.epoch{best['epoch']}.{split}.hyp"
                if not hyp.exists():
                    generate(bin_dir, workdir / "data-bin", checkpoint, hyp, cfg["beam"], len(refs[split]),
                             subset=split)
                row[run][split] = score(hyp, refs[split], tokenize)[0]
        rows.append(row)
    head = "| N | baseline best epoch | R-Drop best epoch | valid loss (base / R-Drop) |"
    head += "".join(f" {s} BLEU (base / R-Drop / gain) |" for s in splits)
    lines = [head, "|" + "---|" * (4 + len(splits))]
    for row in rows:
        b, r = row["baseline"], row["rdrop"]
        line = (f"| {row['N']} | {b['best_epoch']}{'' if b['best_epoch'] < row['N'] else ' (= N)'} | "
                f"{r['best_epoch']} | {b['valid_loss']:.3f} / {r['valid_loss']:.3f} |")
        line += "".join(f" {b[s]:.2f} / {r[s]:.2f} / {r[s] - b[s]:+.2f} |" for s in splits)
        lines.append(line)
    print("\n".join(lines))
    (out / "horizons.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
