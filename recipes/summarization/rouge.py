"""ROUGE-1/2/L F1 (x100) with Google's ``rouge-score`` package, with one or several references.

    python recipes/summarization/rouge.py --hyp test.hypo --ref test.target            # one reference
    python recipes/summarization/rouge.py --hyp test.hypo --ref-jsonl test.refs.jsonl  # several

With several references per hypothesis, each hypothesis is scored against every reference and the
reference with the highest ROUGE-1 F1 is kept for all three metrics, as SciTLDR's official
``evaluate.py`` does (Cachola et al., 2020); the corpus score is the mean over hypotheses.

``--summary-level`` reports ROUGE-Lsum (LCS over sentences; sentences split at ``. ! ?`` followed
by a space), the ROUGE-L variant that files2rouge / ROUGE-1.5.5 report for CNN/DM; without it,
ROUGE-L is the LCS of the whole text.  See README.md for how this differs from files2rouge.
"""

import argparse
import json
import re
import sys

METRICS = ("rouge1", "rouge2", "rougeL")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text):
    """One sentence per line, the form ``rougeLsum`` expects."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def corpus_rouge(hypotheses, references, summary_level=False, use_stemmer=True):
    """Mean ROUGE F1 x100 over hypotheses; ``references[i]`` is a list of references for hypothesis i.

    Returns ``{"rouge1": .., "rouge2": .., "rougeL": .., "count": n}``.
    """
    from rouge_score import rouge_scorer  # imported here: only scoring needs it

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    l_name = "rougeLsum" if summary_level else "rougeL"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", l_name], use_stemmer=use_stemmer)
    prepare = split_sentences if summary_level else str.strip
    totals = dict.fromkeys(METRICS, 0.0)
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if not refs:
            raise ValueError(f"hypothesis {i} has no reference")
        scored = [scorer.score(prepare(ref), prepare(hyp)) for ref in refs]
        best = max(scored, key=lambda s: s["rouge1"].fmeasure)
        totals["rouge1"] += best["rouge1"].fmeasure
        totals["rouge2"] += best["rouge2"].fmeasure
        totals["rougeL"] += best[l_name].fmeasure
    result = {name: 100.0 * total / len(hypotheses) for name, total in totals.items()}
    result["count"] = len(hypotheses)
    return result


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main(argv=None):
    parser = argparse.ArgumentParser(description="ROUGE-1/2/L F1 with rouge-score (max over references)")
    parser.add_argument("--hyp", required=True, help="hypotheses, one per line")
    refs = parser.add_mutually_exclusive_group(required=True)
    refs.add_argument("--ref", action="append", help="references, one per line (repeat for several)")
    refs.add_argument("--ref-jsonl", help="one JSON list of reference strings per line")
    parser.add_argument("--summary-level", action="store_true", help="ROUGE-Lsum instead of ROUGE-L")
    parser.add_argument("--no-stemmer", action="store_true", help="no Porter stemming")
    parser.add_argument("--json-out", help="also write the scores to this JSON file")
    args = parser.parse_args(argv)

    hyps = read_lines(args.hyp)
    if args.ref_jsonl:
        references = [json.loads(line) for line in read_lines(args.ref_jsonl)]
        source = args.ref_jsonl
    else:
        columns = [read_lines(path) for path in args.ref]
        for path, column in zip(args.ref, columns):
            if len(column) != len(hyps):
                parser.error(f"--ref {path} has {len(column)} lines but --hyp {args.hyp} has {len(hyps)}")
        references = [list(refs) for refs in zip(*columns)]
        source = ", ".join(args.ref)
    if len(references) != len(hyps):
        parser.error(f"{source} has {len(references)} reference sets but --hyp {args.hyp} has {len(hyps)} lines")
    try:
        scores = corpus_rouge(hyps, references, args.summary_level, not args.no_stemmer)
    except ValueError as error:
        parser.error(f"{args.hyp}: {error}")
    l_label = "ROUGE-Lsum" if args.summary_level else "ROUGE-L"
    print(f"ROUGE-1 {scores['rouge1']:.2f} ROUGE-2 {scores['rouge2']:.2f} {l_label} {scores['rougeL']:.2f} "
          f"(F1 x100, mean of {scores['count']} hypotheses; up to {max(map(len, references))} references "
          "each, the best by ROUGE-1 kept)")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(scores, f, indent=2)
    return scores


if __name__ == "__main__":
    main(sys.argv[1:])
