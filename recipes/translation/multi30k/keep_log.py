"""The epoch summaries of a work folder's training logs: small enough to commit, enough to redo
the loss plot, the time to quality and the epoch columns of run.py's table.

    python recipes/translation/multi30k/keep_log.py --workdir ~/runs/full29k --out docs/logs/multi30k-full29k

A full29k run's fairseq log is megabytes (a line every 20 updates); this keeps its command line,
each epoch's train and valid summary, the line with which each fairseq-train process started
(fresh, or resumed from a checkpoint: the time to quality sums wall times over them) and
fairseq's early-stop line. The files are written as ``<out>/runs/seed<S>/<run>/train.log``, so
that ``time_to_quality.py --workdir <out>`` reads them as it reads the work folder. Runs still
training can be kept too: the next call overwrites them with their longer summaries.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from recipes.translation.multi30k.time_to_quality import EARLY_STOP, FRESH, RESUMED  # noqa: E402

# fairseq's end-of-epoch summaries (json log format) and its --patience stop
KEPT = ("| train | {", "| valid | {", EARLY_STOP)


def summary_lines(log_text):
    """The command line (fairseq-train's log starts with it) and the lines worth keeping."""
    lines = log_text.splitlines()
    kept = [line for line in lines[1:] if any(mark in line for mark in KEPT) or FRESH in line
            or RESUMED.search(line)]
    return lines[:1] + kept


def keep_logs(workdir, out):
    """Write every run's summary under ``out``; returns the files written."""
    written = []
    for log in sorted(Path(workdir).glob("runs/seed*/*/train.log")):
        target = Path(out) / log.relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(summary_lines(log.read_text(encoding="utf-8", errors="replace"))) + "\n",
                          encoding="utf-8")
        written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a run.py work folder")
    parser.add_argument("--out", type=Path, required=True, help="where to write the summaries")
    args = parser.parse_args(argv)
    written = keep_logs(args.workdir, args.out)
    if not written:
        parser.error(f"--workdir {args.workdir}: no runs/seed*/*/train.log in it")
    for path in written:
        print(f"{path}: {len(path.read_text(encoding='utf-8').splitlines())} lines")
    return written


if __name__ == "__main__":
    main()
