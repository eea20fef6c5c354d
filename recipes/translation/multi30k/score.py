"""Score the quickstart's two models on any other test set: sacreBLEU for baseline and R-Drop.

    python recipes/translation/multi30k/score.py --workdir work/multi30k-main \
        --src my_test.de --ref my_test.en [--seed 1] [--name my_test]
    # a source without references: translations only, one file per run
    python recipes/translation/multi30k/score.py --workdir W --src X.de --out docs/blind/multi30k/main

The German source is encoded with the work folder's sentencepiece model and binarized with its
dictionary (``fairseq-preprocess --srcdict/--tgtdict``), both runs' best checkpoints translate it with
the recipe's beam, and the hypotheses are scored against the references exactly as test_2016 is
(detokenized sacreBLEU 13a; ``-tok none`` for a work folder on the corpus's tokenised text). Use it
to check that a gain on test_2016 generalises, e.g. on Multi30k's test_2017/test_2018 or MSCOCO sets.
``--out DIR`` also writes each run's translations to ``DIR/<run>/<name>.hyp``, as the recipe writes
test.hyp (detokenised; on a tokenised-text work folder, tokenised lowercased), in the source's order.
``--runs baseline`` uses one run's model alone, e.g. while the other one still trains; a run whose
training has not finished is refused (its checkpoint_best.pt is not yet the selected one).
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from recipes.translation.multi30k.pipeline import RUNS, generate  # noqa: E402
from recipes.translation.multi30k.run import score  # noqa: E402
from recipes.common.data import Stages  # noqa: E402
from recipes.common.fairseq_bin import fairseq_bin_dir  # noqa: E402


def read_pairs(src, ref=None):
    """The source lines and the reference lines (None without ``ref``), checked: same count, none empty."""
    src_lines = Path(src).read_text(encoding="utf-8").splitlines()
    ref_lines = Path(ref).read_text(encoding="utf-8").splitlines() if ref is not None else None
    if ref_lines is not None and len(src_lines) != len(ref_lines):
        raise SystemExit(f"--src {src} has {len(src_lines)} lines but --ref {ref} has {len(ref_lines)}")
    for path, lines in ((src, src_lines), (ref, ref_lines or [])):
        for number, line in enumerate(lines, 1):
            if not line.strip():
                raise SystemExit(f"{path}:{number}: empty line (fairseq-generate would drop it)")
    return src_lines, ref_lines


def binarize(workdir, out, src_lines, ref_lines, bin_dir):
    """Encode with the work folder's sentencepiece model; binarize against its dictionary (the
    source alone where ``ref_lines`` is None: fairseq-generate translates it without targets)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(workdir / "spm.model"))
    out.mkdir(parents=True, exist_ok=True)
    sides = (("de", src_lines),) + ((("en", ref_lines),) if ref_lines is not None else ())
    for lang, lines in sides:
        pieces = [" ".join(p) for p in sp.encode(lines, out_type=str)]
        (out / f"test.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    data_bin = workdir / "data-bin"
    dicts = ["--srcdict", str(data_bin / "dict.de.txt")] + (
        ["--tgtdict", str(data_bin / "dict.en.txt")] if ref_lines is not None else ["--only-source"])
    subprocess.run(
        [str(bin_dir / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
         "--testpref", str(out / "test"), "--destdir", str(out / "data-bin"), *dicts, "--workers", "1"],
        check=True, capture_output=True, text=True,
    )
    if ref_lines is None:  # the translation task loads the target dictionary all the same
        shutil.copyfile(data_bin / "dict.en.txt", out / "data-bin" / "dict.en.txt")
    return out / "data-bin"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a finished run.py work folder")
    parser.add_argument("--src", type=Path, required=True, help="German source, one sentence per line")
    parser.add_argument("--ref", type=Path, help="English references, same line count (without: translate only)")
    parser.add_argument("--out", type=Path, help="also write each run's translations to OUT/<run>/<name>.hyp")
    parser.add_argument("--seed", type=int, default=1, help="which seed's models (default: %(default)s)")
    parser.add_argument("--name", help="name of the test set (default: the source file's stem)")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help="comma-separated runs whose models translate (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.ref is None and args.out is None:
        parser.error("without --ref there is nothing to score: give --out DIR for the translations")
    runs = [run for run in args.runs.split(",") if run]
    if not runs or any(run not in RUNS for run in runs):
        parser.error(f"--runs {args.runs}: choose among {', '.join(RUNS)}")

    workdir = args.workdir.resolve()
    cfg = json.loads((workdir / "config.json").read_text())
    seed_dir = workdir / "runs" / f"seed{args.seed}"
    stages = Stages(workdir / "stages")  # run.py's markers: a run's training is done when it has one
    for run in runs:
        if not stages.is_done(f"train-{run}-seed{args.seed}"):
            raise SystemExit(f"{run} of seed {args.seed} in {workdir} has not finished training (no "
                             f"{seed_dir / run / 'checkpoint_best.pt'} selected yet): run run.py with this "
                             f"--workdir and --seeds {args.seed} first, or leave it out with --runs")
    src_lines, ref_lines = read_pairs(args.src, args.ref)
    name = args.name or args.src.stem
    out = workdir / "extra_tests" / name
    bin_dir = fairseq_bin_dir()
    data_bin = binarize(workdir, out, src_lines, ref_lines, bin_dir)
    tokenize = "none" if cfg.get("text") == "tok" else "13a"
    results = {}
    for run in runs:
        hyp = out / f"{run}.seed{args.seed}.hyp"
        generate(bin_dir, data_bin, seed_dir / run / "checkpoint_best.pt", hyp, cfg["beam"], len(src_lines))
        if args.out is not None:
            (args.out / run).mkdir(parents=True, exist_ok=True)
            (args.out / run / f"{name}.hyp").write_bytes(hyp.read_bytes())
        if ref_lines is not None:
            results[run], signature = score(hyp, ref_lines, tokenize)
    if ref_lines is None:
        print(f"translations of {name} ({len(src_lines)} lines): " + ", ".join(str(args.out / r) for r in runs))
        return results
    if len(runs) == 1:
        print(f"\n| test set | sentences | {runs[0]} BLEU |\n|---|---|---|\n| {name} | {len(src_lines)} "
              f"| {results[runs[0]]:.2f} |\n\nsacreBLEU signature: {signature}")
        return results
    print(f"\n| test set | sentences | baseline BLEU | R-Drop BLEU | R-Drop - baseline |\n|---|---|---|---|---|\n"
          f"| {name} | {len(src_lines)} | {results['baseline']:.2f} | {results['rdrop']:.2f} "
          f"| {results['rdrop'] - results['baseline']:+.2f} |\n\nsacreBLEU signature: {signature}")
    return results


if __name__ == "__main__":
    main()
