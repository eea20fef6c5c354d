"""Score the classification recipe's kept checkpoints on any labelled file of the dataset's format,
or write their predictions for an unlabelled one (such as the blind test sets).

    RDROP_DATA_DIR=../shared/data python recipes/classification/score.py --dataset cola --setting minilm \
        --file my_cola.tsv                 # labelled: prints every run's metrics, mean +- std per run
    python recipes/classification/score.py --dataset cola --setting minilm --blind
                                           # ../shared/blind/glue/CoLA/test.txt -> docs/blind/...

The file is read as run.py reads the dev set (prepare.parse_lines: the corpus's own format when it
has labels, the blind sets' format when not), tokenized with the work folder's tokenizer (its
converted BERT's WordPiece, or words) and binarized with its dictionaries; every kept checkpoint
(``<workdir>/runs/<run>-seed<S>/checkpoint_best.pt``, the best dev epoch) then predicts it through
fairseq's own sentence_prediction dataset (the same <s>/</s> layout and truncation as in training).

Labelled: prints accuracy (SST-2), Matthews correlation and accuracy (CoLA), Pearson and Spearman
(STS-B; scores / 5 as in training, which changes neither), macro-F1, micro-F1 and exact match at
logit > 0 (GoEmotions; macro over the labels present in the gold labels or the predictions), all
x 100, per run and seed, and writes them to ``<out>/results.json``. Unlabelled: writes
``<out>/<run>-seed<S>/<file stem>.pred``, one line per input line: the label (CoLA, SST-2: 1 or 0),
the predicted similarity on the 0-5 scale (STS-B: the regression output x 5, not clipped) or the
label ids at logit > 0, comma-separated, empty if none (GoEmotions). ``<out>`` is
``<workdir>/scored/<file stem>`` (``--out`` to change it); with ``--blind`` the file is the
dataset's blind test set and ``<out>`` is ``docs/blind/classification/<dataset>-<setting>/``.
"""
import argparse
import json
import logging
import math
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.classification.prepare import BINARY, prepare_file  # noqa: E402

BLIND_FILES = {"cola": "glue/CoLA/test.txt", "sst2": "glue/SST-2/test.txt", "stsb": "glue/STS-B/test.tsv",
               "goemotions": "goemotions/test.tsv"}  # under ../shared/blind (its README.md)
METRICS = {"cola": ("mcc", "accuracy"), "sst2": ("accuracy",), "stsb": ("pearson", "spearman"),
           "goemotions": ("macro_f1", "micro_f1", "exact_match")}


# ---- metrics (x 100), written plainly --------------------------------------------------------
def matthews(pred, gold):
    tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold))
    tn = sum(p == 0 and g == 0 for p, g in zip(pred, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 100 * (tp * tn - fp * fn) / denominator if denominator else 0.0  # scikit-learn's 0 for a constant side


def f1_scores(pred_sets, gold_sets, n_labels):
    """macro-F1 over the labels in the gold sets or the predictions, micro-F1, exact match (x 100)."""
    tp, fp, fn = [0] * n_labels, [0] * n_labels, [0] * n_labels
    for p, g in zip(pred_sets, gold_sets):
        for c in range(n_labels):
            tp[c] += c in p and c in g
            fp[c] += c in p and c not in g
            fn[c] += c not in p and c in g
    present = [c for c in range(n_labels) if tp[c] + fp[c] + fn[c]]
    macro = statistics.mean(200 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in present) if present else 0.0
    micro_den = 2 * sum(tp) + sum(fp) + sum(fn)
    micro = 200 * sum(tp) / micro_den if micro_den else 0.0
    exact = 100 * statistics.mean(p == g for p, g in zip(pred_sets, gold_sets))
    return macro, micro, exact


def metrics_of(dataset, outputs, gold):
    """The dataset's metrics of ``outputs`` (per example: class id, score / 5 or the set of label ids)
    against ``gold`` (the same kind)."""
    if dataset in BINARY:
        accuracy = 100 * statistics.mean(p == g for p, g in zip(outputs, gold))
        return {"mcc": matthews(outputs, gold), "accuracy": accuracy} if dataset == "cola" else {"accuracy": accuracy}
    if dataset == "stsb":
        from scipy.stats import pearsonr, spearmanr
        return {"pearson": 100 * float(pearsonr(outputs, gold)[0]),
                "spearman": 100 * float(spearmanr(outputs, gold)[0])}
    macro, micro, exact = f1_scores(outputs, gold, 1 + max(max(s, default=0) for s in [*outputs, *gold]))
    return {"macro_f1": macro, "micro_f1": micro, "exact_match": exact}


# ---- fairseq: a kept checkpoint's outputs on a prepared data folder -----------------------------
def model_outputs(checkpoint, data, batch_size=32):
    """Per example of split ``test`` of ``data``, in file order: the classification head's output
    row (logits, or the regression score), as sentence_prediction's criterion computes it."""
    import rdrop_fairseq  # noqa: F401  (the plugin's task and criterion; torch's weights_only loading)
    import torch
    from fairseq import checkpoint_utils, utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                    arg_overrides={"data": str(data)})
    model = models[0].eval()
    (head,) = model.classification_heads.keys()
    task.load_dataset("test")
    batches = task.get_batch_iterator(
        dataset=task.dataset("test"), max_sentences=batch_size, required_batch_size_multiple=1,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()), seed=1,
        num_workers=0).next_epoch_itr(shuffle=False)
    rows = {}
    with torch.no_grad():
        for sample in batches:
            logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=head)
            rows.update(zip(sample["id"].tolist(), logits.float().tolist()))
    return [rows[i] for i in range(len(rows))]


def decode(dataset, rows, label_dict):
    """Model outputs -> the dataset's predictions: class id, score / 5, or the set of label ids."""
    if dataset in BINARY:
        return [int(label_dict[max(range(len(r)), key=r.__getitem__)]) for r in rows]
    if dataset == "stsb":
        return [r[0] for r in rows]
    return [{c for c, logit in enumerate(r) if logit > 0} for r in rows]


def gold_labels(dataset, data):
    """The prepared file's labels, as decode() gives predictions."""
    if dataset == "stsb":
        return [float(x) for x in (data / "raw" / "test.label").read_text().split()]
    if dataset in BINARY:
        return [int(x) for x in (data / "raw" / "test.label").read_text().split()]
    names = {n: i for i, n in enumerate((data / "label" / "labels.txt").read_text().split())}
    return [{names[n] for n in line.split()} for line in (data / "raw" / "test.label").read_text().splitlines()]


def prediction_line(dataset, prediction):
    if dataset in BINARY:
        return str(prediction)
    if dataset == "stsb":
        return f"{5 * prediction:.4f}"
    return ",".join(str(c) for c in sorted(prediction))


def kept_checkpoints(workdir, runs, seeds):
    """(name, checkpoint) of every kept run, in the order run.py trains them."""
    found = sorted((workdir / "runs").glob("*-seed*/checkpoint_best.pt"))
    out = []
    for ckpt in found:
        run, seed = ckpt.parent.name.rsplit("-seed", 1)
        if (not runs or run in runs) and (not seeds or int(seed) in seeds):
            out.append((ckpt.parent.name, ckpt))
    if not out:
        raise SystemExit(f"no kept checkpoint under {workdir / 'runs'} (runs {runs or 'any'}, seeds "
                         f"{seeds or 'any'}): run run.py with this --workdir first")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(METRICS), required=True)
    parser.add_argument("--setting", default="cpu", help="run.py's setting (names the default --workdir and "
                        "the --blind output folder)")
    parser.add_argument("--workdir", type=Path, help="run.py's work folder (default: <repo>/work/"
                        "classification-<dataset>-<setting>)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a file in the dataset's format, labelled or not")
    source.add_argument("--blind", action="store_true", help="the dataset's blind test set (--blind-dir)")
    parser.add_argument("--blind-dir", type=Path, default=REPO.parent / "shared" / "blind",
                        help="the blind test inputs (default: %(default)s)")
    parser.add_argument("--runs", help="comma-separated runs (default: every kept run)")
    parser.add_argument("--seeds", type=int, nargs="+", help="(default: every kept seed)")
    parser.add_argument("--out", type=Path, help="output folder (default: see above)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # before fairseq's
    workdir = (args.workdir or REPO / "work" / f"classification-{args.dataset}-{args.setting}").resolve()
    if not (workdir / "config.json").is_file():
        parser.error(f"--workdir {workdir}: not a run.py work folder (no config.json)")
    path = args.blind_dir / BLIND_FILES[args.dataset] if args.blind else args.file
    if not path.is_file():
        parser.error(f"{path}: no such file")
    out = (args.out or (REPO / "docs" / "blind" / "classification" / f"{args.dataset}-{args.setting}" if args.blind
                        else workdir / "scored" / path.stem)).resolve()
    checkpoints = kept_checkpoints(workdir, [r for r in (args.runs or "").split(",") if r], args.seeds)
    cfg = json.loads((workdir / "config.json").read_text())
    vocab = workdir / "encoder" / "vocab.txt" if cfg.get("encoder") else None
    # the prepared copy stays in the work folder (docs/blind/ holds only the .pred files)
    data, n, labelled = prepare_file(workdir, args.dataset, path, workdir / "scored" / path.stem / "prepared", vocab)
    label_dict = [line.split()[0] for line in (workdir / "bin" / "label" / "dict.txt").read_text().splitlines()] \
        if args.dataset in BINARY else None
    gold = gold_labels(args.dataset, data) if labelled else None
    results = {}
    for name, ckpt in checkpoints:
        predictions = decode(args.dataset, model_outputs(ckpt, data), label_dict)
        if labelled:
            results[name] = metrics_of(args.dataset, predictions, gold)
            print(f"[score] {name}: " + ", ".join(f"{m} {v:.2f}" for m, v in results[name].items()), flush=True)
        else:
            dest = out / name / f"{path.stem}.pred"  # the blind README: the input's name, .pred
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text("".join(prediction_line(args.dataset, p) + "\n" for p in predictions), encoding="utf-8")
            results[name] = str(dest)
            print(f"[predict] {name}: {n} predictions -> {dest}", flush=True)
    if labelled:
        print(format_table(results, METRICS[args.dataset], path, n))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(dict(file=str(path), examples=n, runs=results), indent=1))
    return results


def format_table(results, metrics, path, n):
    by_run = {}
    for name, values in results.items():
        by_run.setdefault(name.rsplit("-seed", 1)[0], []).append(values)
    lines = [f"\n{path} ({n} examples): mean ± std over seeds (n - 1)",
             "| run | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for run, rows in by_run.items():
        cells = []
        for m in metrics:
            values = [r[m] for r in rows]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {std:.2f}")
        lines.append(f"| {run} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
