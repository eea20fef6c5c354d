"""Multi30k stages that run fairseq: train one run, translate a binarized split, average checkpoints.

Shared by ``run.py`` (the baseline-vs-R-Drop comparison) and ``score.py`` (the same two models on any
other test set). Every command runs the venv's fairseq console scripts with this plugin's --user-dir.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from recipes.common.average_checkpoints import average_checkpoints, last_checkpoints  # noqa: E402
from recipes.common.fairseq_flags import KEEP_LAST_BATCH  # noqa: E402

LABEL_SMOOTHING = 0.1
RUNS = ("baseline", "rdrop")


def user_dir():
    return REPO / "rdrop_fairseq"


def thread_env(threads=1):
    """The environment of a fairseq process given ``threads`` CPU threads: one each when both runs
    train side by side on a 2-core CPU (two fighting for both cores is slower), all cores when one
    run trains at a time."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")


def device_flags(device):
    """fairseq flags for ``device``: "cpu" (fp32) or "cuda" (the GPU fairseq picks, --fp16)."""
    if device == "cpu":
        return ["--cpu"]
    if device == "cuda":
        return ["--fp16"]
    raise ValueError(f"device must be cpu or cuda, got {device!r}")


def transformer_flags(cfg):
    """The task, model, adam's hyper-parameters, lr schedule, batch size and length of training:
    everything of a run but the optimizer's name, criterion, seed and outputs (which
    recipes/childtuning/run.py sets per run when it fine-tunes this model)."""
    return [
        "--task", "translation", "--source-lang", "de", "--target-lang", "en",
        "--arch", "transformer", "--share-all-embeddings",
        "--encoder-layers", str(cfg["layers"]), "--decoder-layers", str(cfg["layers"]),
        "--encoder-embed-dim", str(cfg["embed_dim"]), "--decoder-embed-dim", str(cfg["embed_dim"]),
        "--encoder-ffn-embed-dim", str(cfg["ffn_dim"]), "--decoder-ffn-embed-dim", str(cfg["ffn_dim"]),
        "--encoder-attention-heads", str(cfg["heads"]), "--decoder-attention-heads", str(cfg["heads"]),
        "--dropout", str(cfg["dropout"]), "--attention-dropout", "0.1", "--activation-dropout", "0.1",
        "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.0001",
        "--lr", str(cfg["lr"]), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(cfg["warmup"]),
        "--max-tokens", str(cfg["max_tokens"]), "--max-epoch", str(cfg["max_epoch"]),
        "--max-update", str(cfg["max_update"]),
        # ends the run once validation loss has not improved for this many epochs (0: never)
        "--patience", str(cfg.get("patience", 0)),
    ]


def train_command(bin_dir, data_bin, save_dir, cfg, run, seed, device="cpu"):
    """fairseq-train for ``run``; baseline and R-Drop differ only in the criterion (and alpha)."""
    cmd = [
        str(bin_dir / "fairseq-train"), str(data_bin), "--user-dir", str(user_dir()),
        *transformer_flags(cfg), "--optimizer", "adam", "--seed", str(seed),
        "--label-smoothing", str(LABEL_SMOOTHING),
        "--save-dir", str(save_dir), *epoch_checkpoint_flags(cfg),
        "--log-format", "json", "--log-interval", "20", *device_flags(device), "--num-workers", "0",
        *KEEP_LAST_BATCH,
    ]
    if run == "rdrop":
        cmd += ["--criterion", "label_smoothed_cross_entropy_with_rdrop", "--rdrop-alpha", str(cfg["rdrop_alpha"])]
    else:
        cmd += ["--criterion", "label_smoothed_cross_entropy"]
    if cfg["eval_bleu"]:  # greedy validation BLEU after each epoch, logged as valid_bleu
        cmd += [
            # the length caps of generate() below: an early model's babble costs minutes otherwise
            "--eval-bleu", "--eval-bleu-args", '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}',
            "--eval-bleu-detok", "space",
            "--eval-bleu-remove-bpe", "sentencepiece",
        ]
        if cfg.get("text") == "tok":  # tokenised lowercased text: sacreBLEU -tok none, as test is scored
            cmd += ["--eval-tokenized-bleu"]
    return cmd


def best_epoch_stats(stats):
    """The validation line of the epoch whose checkpoint fairseq keeps as checkpoint_best.pt: the
    lowest logged validation loss, and on a tie the LATER epoch (fairseq compares the loss as logged,
    rounded to 3 decimals, with <=, so a later equal value replaces the earlier checkpoint)."""
    return min(reversed(stats), key=lambda s: s["valid_loss"])


def epoch_checkpoint_flags(cfg):
    """Keep all epoch checkpoints (``keep_epochs`` = "all"), the last N (for averaging), or none."""
    keep = cfg.get("keep_epochs")
    if keep == "all":
        return []
    if keep:
        return ["--keep-last-epochs", str(keep)]
    return ["--no-epoch-checkpoints"]


def stream(cmd, log_path, prefix, threads=1, progress=None):
    """Run ``cmd`` with its whole output kept in ``log_path`` (appended: a resumed run keeps its
    history) and one line per epoch on the console from ``progress`` (an ``EpochProgress``); on a
    failure the log's last lines are shown. Returns the exit code."""
    log_path = Path(log_path)
    if progress is not None and log_path.exists():
        progress.replay(log_path.read_text(encoding="utf-8", errors="replace").splitlines())
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:  # line-buffered: tail -f works
        log.write(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=thread_env(threads))
        tail = []
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line])[-20:]
            shown = progress.feed(line) if progress is not None else line.rstrip("\n")
            if shown:
                print(f"[{prefix}] {shown}", flush=True)
        code = proc.wait()
    if code != 0:
        print(f"[{prefix}] failed (exit {code}); the end of {log_path}:\n" + "".join(tail), end="", flush=True)
    return code


def generate(bin_dir, data_bin, checkpoint, out_hyp, beam, expected, subset="test", device="cpu", threads=1):
    """Translate ``subset`` with ``checkpoint``; write detokenized hypotheses in corpus order."""
    cmd = [
        str(bin_dir / "fairseq-generate"), str(data_bin), "--user-dir", str(user_dir()),
        "--task", "translation", "--source-lang", "de", "--target-lang", "en",
        "--path", str(checkpoint), "--gen-subset", subset,
        "--beam", str(beam), "--batch-size", "128", "--remove-bpe", "sentencepiece", *device_flags(device),
        "--max-len-a", "1.2", "--max-len-b", "10",  # caps an untrained model's babble (tiny setting)
        *KEEP_LAST_BATCH,
    ]
    print("[generate] " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, env=thread_env(threads))
    out_hyp = Path(out_hyp)
    out_hyp.with_suffix(".generate.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    hyps = {}
    for line in result.stdout.splitlines():
        if line.startswith("D-"):
            tag, _score, text = (line.split("\t") + ["", ""])[:3]
            hyps[int(tag[2:])] = text
    if sorted(hyps) != list(range(expected)):
        raise SystemExit(f"fairseq-generate translated {len(hyps)} of {expected} sentences; "
                         f"see {out_hyp.with_suffix('.generate.log')}")
    out_hyp.write_text("\n".join(hyps[i] for i in range(expected)) + "\n", encoding="utf-8")
    print(f"[generate] {expected} hypotheses -> {out_hyp}", flush=True)


def write_average(save_dir, n):
    """checkpoint_avg<n>.pt: the mean of the last ``n`` epoch checkpoints (the paper's WMT protocol)."""
    import torch

    target = Path(save_dir) / f"checkpoint_avg{n}.pt"
    torch.save(average_checkpoints(last_checkpoints(save_dir, n)), target)
    return target


def run_in_threads(jobs):
    """Run the callables side by side; re-raise the first failure after all have stopped."""
    errors = []

    def guarded(job):
        try:
            job()
        except BaseException as error:  # SystemExit included: a failed stage names its log
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
