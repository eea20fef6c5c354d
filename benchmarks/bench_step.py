"""One full training step (forward + criterion + backward) of a real fairseq transformer.

    python benchmarks/bench_step.py            # V = 10k and 32k, 64 x 32 tokens per copy
    python benchmarks/bench_step.py --quick    # smoke run (V = 10k, 16 x 32 tokens)
    python benchmarks/bench_step.py --device cuda --layers 6 --embed-dim 512 --ffn-dim 2048 \
        --heads 8 --sentences 128       # transformer-base size on a GPU (see common.py)
    python benchmarks/bench_step.py --device cuda --fp16 ...   # the model in float16, as --fp16 trains it

Model: fairseq ``transformer`` (by default 2+2 layers, d=256, 4 heads, FFN 1024, dropout 0.1,
shared embeddings; --layers/--embed-dim/--ffn-dim/--heads change it), a TranslationTask over a Dictionary of V symbols, random tokens
(no data files). Each mode runs in its own subprocess (peak RSS is its own):
  baseline     label_smoothed_cross_entropy on the per-copy batch (B sentences)
  baseline-2x  label_smoothed_cross_entropy on the doubled batch (2B): the floor for R-Drop
  builtin      fairseq's own label_smoothed_cross_entropy_with_rdrop (rdrop_fairseq NOT imported)
  fused        rdrop_fairseq's criterion, --rdrop-impl fused
  reference    rdrop_fairseq's criterion, --rdrop-impl reference
all with label smoothing 0.1 and (R-Drop modes) alpha 5, m = 2.
--fp16 casts the model to float16, as fairseq-train --fp16 holds it (the logits come out in float16
and each criterion takes them as it does there); no loss scaling or optimizer step is timed.
"""
import argparse
import os
import sys
from argparse import Namespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (add_mode_options, check_device, device_args, emit, machine_line,  # noqa: E402
                    markdown_table, median, mem_label, memory_mb, peak_and_base, peak_rss_mb,
                    reset_peak_memory, run_modes, set_chunk_mb, synchronize, timed_reps, write_json)

EPS, ALPHA = 0.1, 5.0
MODES = ["baseline", "baseline-2x", "builtin", "fused", "reference"]


def build_task(vocab):
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}")
    return TranslationTask(TranslationConfig(), d, d)


def build_model(task, layers=2, dim=256, ffn=1024, heads=4):
    import torch
    from fairseq.models.transformer import TransformerModel, base_architecture

    args = Namespace(
        arch="transformer", encoder_layers=layers, decoder_layers=layers, encoder_embed_dim=dim,
        decoder_embed_dim=dim, encoder_ffn_embed_dim=ffn, decoder_ffn_embed_dim=ffn,
        encoder_attention_heads=heads, decoder_attention_heads=heads, dropout=0.1,
        attention_dropout=0.0, activation_dropout=0.0, share_all_embeddings=True,
        max_source_positions=256, max_target_positions=256,
    )
    base_architecture(args)
    torch.manual_seed(0)
    return TransformerModel.build_model(args, task)


def make_batch(task, bsz, length, seed=1):
    """Random sentences, right-padded targets (every 8th sentence 1/4 shorter)."""
    import torch

    d = task.target_dictionary
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(d.nspecial, len(d), (bsz, length), generator=g)
    tgt = torch.randint(d.nspecial, len(d), (bsz, length), generator=g)
    tgt[:, -1] = d.eos()
    short = length - length // 4
    tgt[::8, short:] = d.pad()
    tgt[::8, short - 1] = d.eos()
    prev = torch.cat([torch.full((bsz, 1), d.eos()), tgt[:, :-1]], 1)
    prev[::8, short:] = d.pad()
    return {
        "id": torch.arange(bsz),
        "net_input": {"src_tokens": src, "src_lengths": torch.full((bsz,), length),
                      "prev_output_tokens": prev},
        "target": tgt,
        "ntokens": int(tgt.ne(d.pad()).sum()),
        "nsentences": bsz,
    }


def double(sample):
    import torch

    return {
        **sample,
        "net_input": {k: torch.cat([v, v]) for k, v in sample["net_input"].items()},
        "target": torch.cat([sample["target"], sample["target"]]),
        "ntokens": 2 * sample["ntokens"],
        "nsentences": 2 * sample["nsentences"],
        "id": torch.arange(2 * sample["nsentences"]),
    }


def build_criterion(mode, task):
    if mode in ("baseline", "baseline-2x"):
        from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

        return LabelSmoothedCrossEntropyCriterion(task, False, EPS)
    if mode == "builtin":
        # Imported before (and without) rdrop_fairseq, so this is fairseq's own class.
        from fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import (
            RdropLabelSmoothedCrossEntropyCriterion,
        )

        return RdropLabelSmoothedCrossEntropyCriterion(task, False, EPS, rdrop_alpha=ALPHA)
    from rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import RDropLabelSmoothedCrossEntropyCriterion

    crit = RDropLabelSmoothedCrossEntropyCriterion(
        task, False, EPS, rdrop_alpha=ALPHA, rdrop_passes=2,
        rdrop_impl="reference" if mode == "reference" else "fused",
    )
    crit.set_num_updates(1)
    return crit


def child(mode, vocab, bsz, length, reps, budget, args):
    import time

    import torch

    device = args.device
    check_device(device)
    task = build_task(vocab)
    model = build_model(task, args.layers, args.embed_dim, args.ffn_dim, args.heads).to(device)
    if args.fp16:
        model.half()
    model.train()
    criterion = build_criterion(mode, task)
    if mode == "builtin":
        assert type(criterion).__module__.startswith("fairseq."), type(criterion)
        assert "rdrop_fairseq" not in sys.modules
    else:
        set_chunk_mb(args.chunk_mb if mode == "fused" else None, device)
    sample = make_batch(task, bsz, length)
    if mode == "baseline-2x":
        sample = double(sample)
    if device != "cpu":
        from fairseq import utils

        sample = utils.move_to_cuda(sample)
    base_rss = peak_rss_mb()
    losses = []

    def step():
        # a fresh outer dict each step: the built-in duplicates net_input in place
        fresh = {**sample, "net_input": dict(sample["net_input"])}
        loss, sample_size, _ = criterion(model, fresh)
        loss.backward()
        losses.append(float(loss) / sample_size)
        model.zero_grad(set_to_none=True)

    reset_peak_memory(device)
    base_dev = memory_mb(device)[0]
    t0 = time.perf_counter()
    step()  # warm-up
    synchronize(device)
    first = time.perf_counter() - t0
    times = timed_reps(step, reps, budget, device=device)
    result = {"mode": mode, "vocab": vocab, "times": times, "first_s": first,
              "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss, "loss": losses[0],
              "tokens": sample["ntokens"], "threads": torch.get_num_threads(), "device": device}
    if device == "cuda":
        result.update(base_cuda_mb=base_dev, peak_cuda_mb=memory_mb(device)[1])
    emit(result)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: V=10k, 16 x 32 tokens, 2 reps")
    ap.add_argument("--sentences", type=int, default=64, help="sentences per copy")
    ap.add_argument("--length", type=int, default=32, help="source and target length")
    add_mode_options(ap, MODES, reps=5, budget_s=40.0, unit="steps")
    ap.add_argument("--layers", type=int, default=2, help="encoder and decoder layers")
    ap.add_argument("--embed-dim", type=int, default=256)
    ap.add_argument("--ffn-dim", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--fp16", action="store_true", help="the model in float16 (as fairseq-train --fp16)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, vocab, bsz, length, reps, budget = args.child
        return child(mode, int(vocab), int(bsz), int(length), int(reps), float(budget), args)
    if args.quick:
        args.vocab, args.sentences, args.reps, args.budget = [10000], 16, 2, 5.0
    check_device(args.device)
    model_args = ["--layers", args.layers, "--embed-dim", args.embed_dim, "--ffn-dim", args.ffn_dim,
                  "--heads", args.heads] + (["--fp16"] if args.fp16 else [])

    print(machine_line(args.threads, args.device))
    print(f"training step (forward + criterion + backward) on {args.device}, transformer "
          f"{args.layers}+{args.layers} x {args.embed_dim} (FFN {args.ffn_dim}, {args.heads} heads"
          f"{', float16' if args.fp16 else ''}), "
          f"{args.sentences} x {args.length} tokens per copy; eps {EPS}, alpha {ALPHA}; "
          f"wall-time median of up to {args.reps} steps after 1 warm-up"
          + (f"; fused chunk {args.chunk_mb:g} MB" if args.chunk_mb is not None else "") + "\n")
    rows, verdicts, everything = [], [], {}
    for vocab in args.vocab:
        res = run_modes(os.path.abspath(__file__), args.modes, vocab,
                        [args.sentences, args.length, args.reps, args.budget], args.threads,
                        device_args(args) + model_args)
        everything[vocab] = res

        def ratio(mode, ref, key):
            if mode not in res or ref not in res:
                return float("nan")
            if key == "time":
                return median(res[mode]["times"]) / median(res[ref]["times"])
            return peak_and_base(res[mode])[0] / peak_and_base(res[ref])[0]

        for mode, r in res.items():
            peak, start = peak_and_base(r)
            t = median(r["times"])
            rows.append([vocab, mode, r["tokens"], f"{t:.{4 if args.device == 'cuda' else 3}f}",
                         f"{r['tokens'] / t:,.0f}",
                         f"{ratio(mode, 'baseline', 'time'):.2f}x", f"{ratio(mode, 'baseline-2x', 'time'):.2f}x",
                         f"{r['first_s']:.2f}", f"{peak:.0f}",
                         f"{peak - start:.0f}", f"{ratio(mode, 'builtin', 'rss'):.2f}x",
                         f"{r['loss']:.4f}", len(r["times"])])
        if "fused" in res:
            t1, t2, mem = ratio("fused", "baseline", "time"), ratio("fused", "baseline-2x", "time"), \
                ratio("fused", "builtin", "rss")
            parts = [(t2, "baseline-2x", 1.10), (t1, "baseline", 2.05)]
            parts = [f"{r:.2f}x {ref} (target <= {lim:.2f}x: {'met' if r <= lim else 'MISSED'})"
                     for r, ref, lim in parts if ref in res]  # only what was measured
            if "builtin" in res:
                parts.append(f"{mem_label(args.device)[:-3]} {mem:.2f}x built-in "
                             f"(target <= 0.6x: {'met' if mem <= 0.6 else 'MISSED'})")
            verdicts.append(f"V={vocab}: fused " + ", ".join(parts))
    mem = mem_label(args.device)
    print(markdown_table(
        ["V", "criterion", "target tokens", "median s/step", "target tokens/s", "vs baseline",
         "vs baseline-2x", "first step s", mem, "extra MB over setup", f"{mem[:-3]} vs built-in",
         "loss/token", "steps"], rows))
    print("\n" + "\n".join(verdicts))
    write_json(args.json, {"device": args.device, "sentences": args.sentences, "length": args.length,
                           "model": {"layers": args.layers, "embed_dim": args.embed_dim,
                                     "ffn_dim": args.ffn_dim, "heads": args.heads, "fp16": args.fp16},
                           "chunk_mb": args.chunk_mb, "results": everything, "verdicts": verdicts})


if __name__ == "__main__":
    main()
