"""Loss forward+backward alone: fused vs reference vs fairseq's built-in R-Drop ops.

    python benchmarks/bench_loss.py            # 2 x 4096 tokens, V = 10k and 32k
    python benchmarks/bench_loss.py --quick    # smoke run (2 x 512 tokens)
    python benchmarks/bench_loss.py --device cuda --tokens 8192   # on a GPU (see common.py)

Each (vocab, mode) runs in its own subprocess so peak RSS is that mode's alone.
Modes, all on the same fp32 logits (2N, V) with ~6% padding, eps 0.1, alpha 5, each in the
layout it reads (fairseq's built-in pairs rows r and N + r; this plugin interleaves the
copies, rows 2r and 2r + 1), so every mode sees the same pairs of rows:
  ce-2x     no R-Drop: fairseq's label_smoothed_nll_loss on log_softmax of all 2N
            rows (what a doubled batch costs without the KL; the floor)
  builtin   fairseq's RdropLabelSmoothedCrossEntropyCriterion.compute_loss ops:
            label_smoothed_nll_loss on log_softmax + compute_kl_loss (log_softmax
            and softmax again, two kl_div), through a stand-in model whose
            get_normalized_probs is fairseq's own utils.log_softmax / utils.softmax
  reference rdrop_torch.token_loss.rdrop_loss_reference on log_softmax(logits)
  fused     rdrop_torch.fused.fused_rdrop_loss
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (add_mode_options, check_device, device_args, emit, machine_line,  # noqa: E402
                    markdown_table, median, mem_label, memory_mb, peak_and_base, peak_rss_mb,
                    reset_peak_memory, run_modes, set_chunk_mb, synchronize, timed_reps, write_json)

PAD, EPS, ALPHA = 1, 0.1, 5.0
MODES = ["ce-2x", "builtin", "reference", "fused"]


class StandInModel:
    """Just what fairseq's criterion asks of a model: get_normalized_probs on logits."""

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        from fairseq import utils

        logits = net_output[0]
        return utils.log_softmax(logits, dim=-1) if log_probs else utils.softmax(logits, dim=-1)


def make_loss_fn(mode, n):
    """A function (logits, target) -> loss performing `mode`'s computation."""
    import torch

    if mode in ("builtin", "ce-2x"):
        from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
    if mode == "builtin":
        from fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import compute_kl_loss

        model = StandInModel()

        def builtin(logits, target):  # RdropLabelSmoothedCrossEntropyCriterion.compute_loss
            net_output = (logits, None)
            lprobs = model.get_normalized_probs(net_output, log_probs=True)
            lprobs = lprobs.view(-1, lprobs.size(-1))
            target = torch.cat([target, target.clone()], dim=0).view(-1)
            loss, _ = label_smoothed_nll_loss(lprobs, target, EPS, ignore_index=PAD, reduce=True)
            pad_mask = target[: target.size(0) // 2].unsqueeze(-1).eq(PAD)
            loss += ALPHA * compute_kl_loss(model, net_output, pad_mask)
            return loss

        return builtin
    if mode == "ce-2x":
        from fairseq import utils

        return lambda logits, target: label_smoothed_nll_loss(
            utils.log_softmax(logits, dim=-1), target.repeat(2), EPS, ignore_index=PAD)[0]
    if mode == "reference":
        from rdrop_torch.token_loss import rdrop_loss_reference

        return lambda logits, target: rdrop_loss_reference(
            torch.log_softmax(logits, -1), target, 2, ALPHA, EPS, PAD)[0]
    from rdrop_torch.fused import fused_rdrop_loss

    return lambda logits, target: fused_rdrop_loss(logits, target, 2, ALPHA, EPS, PAD)[0]


def make_logits(mode, tokens, vocab, block=512):
    """(2 * tokens, V) random logits, the same two copies for every mode, laid out as
    `mode` pairs them: copy-major for fairseq's ops, interleaved for ours. Filled block
    by block, so setup never holds a second full-size tensor (peak RSS stays the mode's)."""
    import torch

    logits = torch.empty(2 * tokens, vocab)
    if mode in ("builtin", "ce-2x"):
        copies = logits.view(2, tokens, vocab)
    else:
        copies = logits.view(tokens, 2, vocab).transpose(0, 1)
    gen = torch.Generator().manual_seed(0)
    for k in range(2):
        for start in range(0, tokens, block):
            rows = min(block, tokens - start)
            copies[k, start:start + rows].copy_(torch.randn(rows, vocab, generator=gen).mul_(2.0))
    return logits


def child(mode, vocab, tokens, reps, budget, device="cpu", chunk_mb=None):
    import time

    import torch

    check_device(device)
    set_chunk_mb(chunk_mb, device)
    torch.manual_seed(0)
    logits = make_logits(mode, tokens, vocab)
    target = torch.randint(2, vocab, (tokens,))
    target[::16] = PAD
    logits, target = logits.to(device), target.to(device)  # same values on every device
    logits.requires_grad_()
    loss_fn = make_loss_fn(mode, tokens)
    base_rss = peak_rss_mb()
    values = []

    def step():
        loss = loss_fn(logits, target)
        loss.backward()
        values.append(float(loss))
        logits.grad = None

    reset_peak_memory(device)
    base_dev = memory_mb(device)[0]
    t0 = time.perf_counter()
    step()  # warm-up
    synchronize(device)
    first = time.perf_counter() - t0
    times = timed_reps(step, reps, budget, device=device)
    result = {"mode": mode, "vocab": vocab, "tokens": tokens, "times": times, "first_s": first,
              "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss, "loss": values[0],
              "threads": torch.get_num_threads(), "device": device}
    if device == "cuda":
        result.update(base_cuda_mb=base_dev, peak_cuda_mb=memory_mb(device)[1])
    emit(result)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 x 512 tokens, 2 reps")
    ap.add_argument("--tokens", type=int, default=4096, help="target tokens per copy")
    add_mode_options(ap, MODES, reps=5, budget_s=60.0, unit="reps")
    ap.add_argument("--child", nargs=5, metavar=("MODE", "V", "TOKENS", "REPS", "BUDGET"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, vocab, tokens, reps, budget = args.child
        return child(mode, int(vocab), int(tokens), int(reps), float(budget), args.device, args.chunk_mb)
    if args.quick:
        args.tokens, args.reps, args.budget = 512, 2, 5.0
    check_device(args.device)

    print(machine_line(args.threads, args.device))
    print(f"loss forward+backward on {args.device}, 2 x {args.tokens} tokens (fp32 logits), eps {EPS}, "
          f"alpha {ALPHA}; wall-time median of up to {args.reps} reps after 1 warm-up"
          + (f"; fused chunk {args.chunk_mb:g} MB" if args.chunk_mb is not None else "") + "\n")
    rows, verdicts, everything = [], [], {}
    for vocab in args.vocab:
        res = run_modes(os.path.abspath(__file__), args.modes, vocab,
                        [args.tokens, args.reps, args.budget], args.threads, device_args(args))
        everything[vocab] = res
        base = res.get("builtin")
        base_peak, base_base = peak_and_base(base) if base else (float("nan"), float("nan"))
        for mode, r in res.items():
            peak, start = peak_and_base(r)
            t, extra = median(r["times"]), peak - start
            t_ratio = t / median(base["times"]) if base else float("nan")
            m_ratio = extra / (base_peak - base_base) if base else float("nan")
            p_ratio = peak / base_peak if base else float("nan")
            rows.append([vocab, mode, f"{t:.{4 if args.device == 'cuda' else 3}f}", f"{t_ratio:.3f}x", f"{2 * r['tokens'] / t:,.0f}",
                         f"{r['first_s']:.2f}", f"{peak:.0f}", f"{extra:.0f}", f"{m_ratio:.3f}x",
                         f"{p_ratio:.3f}x", f"{r['loss']:.2f}", len(r["times"])])
            if mode == "fused" and base:
                verdicts.append(f"V={vocab}: fused time {t_ratio:.3f}x built-in (target <= 0.10x: "
                                f"{'met' if t_ratio <= 0.10 else 'MISSED'}); extra memory "
                                f"{m_ratio:.3f}x (target <= 0.25x: {'met' if m_ratio <= 0.25 else 'MISSED'})"
                                f"; whole-process peak RSS {p_ratio:.3f}x")
    mem = mem_label(args.device)
    print(markdown_table(
        ["V", "impl", "median s", "time vs built-in", "rows/s", "first call s", mem,
         "extra MB over inputs", "extra vs built-in", f"{mem[:-3]} vs built-in", "loss", "reps"], rows))
    print("\n" + "\n".join(verdicts))
    write_json(args.json, {"device": args.device, "tokens": args.tokens, "chunk_mb": args.chunk_mb,
                           "results": everything, "verdicts": verdicts})


if __name__ == "__main__":
    main()
