"""Real multi-process fairseq training on CPU with the plugin (gloo, torchrun).

Each 2-process run is ``torchrun --nproc_per_node 2 -m rdrop_fairseq.torchrun_train``
(the recipe of docs/distributed.md): fairseq's own data sharding, gradient all-reduce
(``--ddp-backend legacy_ddp``) and logging-output all-reduce.

* Dropout 0 (every copy identical, so the comparison is exact): 2 processes with batch B
  train like 1 process with batch B and ``--update-freq 2``. fairseq shards the epoch's
  batch list round-robin (rank r takes batches r, r+2, ...) and ``--update-freq 2``
  groups consecutive batches, so update u sees batches 2u and 2u+1 in both runs; both
  divide the summed gradient by the summed sample size. Per-batch logging outputs,
  logged losses and the final parameters must agree to fp32 rounding.
* Dropout on: what the 2-process run logs is the token-weighted aggregate of the
  per-rank logging outputs, and the replicas stay identical.

A test-only criterion (a --user-dir written to tmp_path) subclasses the plugin's and
appends each training forward's logging output to a file per rank, so the checks use
what each rank really computed. ``pytest -s`` prints the measured differences
(the figures of docs/distributed.md).
"""
import json
import math
import os
import re
import signal
import subprocess

import pytest
import torch

from helpers import BIN, COMMON, REPO, last_train_stats
from recipes.common.fairseq_flags import KEEP_LAST_BATCH

TINY = (
    "--arch transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 "
    "--decoder-embed-dim 16 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 "
    "--encoder-attention-heads 2 --decoder-attention-heads 2 --share-all-embeddings"
).split()
NO_DROPOUT = "--dropout 0 --attention-dropout 0 --activation-dropout 0".split()
# Fixed batches of 8 sentences whatever their length; in-process data loading.
BATCHES = ["--batch-size", "8", *KEEP_LAST_BATCH, "--num-workers", "0"]
GLOO = "--distributed-backend gloo --ddp-backend legacy_ddp".split()
UPDATES = 4

RECORDER = '''
"""Test-only: the plugin's criterion, appending each training forward's logging output
(and a checksum of the replica's parameters) to records/rank<R>.jsonl."""
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, {repo!r})  # this checkout's rdrop_fairseq
from fairseq.criterions import register_criterion  # noqa: E402
from rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import (  # noqa: E402
    RDropLabelSmoothedCrossEntropyConfig,
    RDropLabelSmoothedCrossEntropyCriterion,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "records")


@register_criterion("rdrop_recording", dataclass=RDropLabelSmoothedCrossEntropyConfig)
class RecordingCriterion(RDropLabelSmoothedCrossEntropyCriterion):
    def forward(self, model, sample, reduce=True, net_output=None):
        loss, sample_size, log = super().forward(model, sample, reduce, net_output)
        if model.training:
            rank = dist.get_rank() if dist.is_initialized() else 0
            row = {{k: float(v) for k, v in log.items()}}
            row["update"] = self.current_num_updates()
            row["ids"] = sample["id"].tolist()
            row["param_sum"] = sum(float(p.double().sum()) for p in model.parameters())
            os.makedirs(OUT, exist_ok=True)
            with open(os.path.join(OUT, f"rank{{rank}}.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\\n")
        return loss, sample_size, log
'''


def recording_user_dir(tmp_path):
    user_dir = tmp_path / "rdrop_recording"
    user_dir.mkdir(parents=True)
    (user_dir / "__init__.py").write_text(RECORDER.format(repo=str(REPO)))
    return user_dir


def records(user_dir, rank):
    path = user_dir / "records" / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def inner_stats(log):
    """Per-update logged stats (``--log-interval 1``), one dict per update."""
    lines = [l for l in log.splitlines() if "| train_inner |" in l]
    return [dict(re.findall(r"(\w+)=([-\d.]+)", l.split("|")[-1])) for l in lines]


def train_args(data, user_dir, save_dir, extra):
    return [data, "--user-dir", user_dir, *TINY, "--criterion", "rdrop_recording",
            "--label-smoothing", "0.1", *BATCHES, "--max-update", UPDATES,
            "--disable-validation", "--save-dir", save_dir, *COMMON, *extra]


def cli_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def start(cmd, cwd):
    # own process group, so a hung run (e.g. a rendezvous that never completes) is killed
    # with the workers torchrun started
    return subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc, timeout=900):
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        raise AssertionError(f"{proc.args[:3]} still running after {timeout} s:\n{out[-4000:]}")
    assert proc.returncode == 0, f"{proc.args[:3]} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def start_torchrun(args, cwd):
    """fairseq-train in 2 gloo processes via the package's torchrun launcher."""
    return start([BIN / "torchrun", "--standalone", "--nproc_per_node", "2",
                  "-m", "rdrop_fairseq.torchrun_train", *args, *GLOO], cwd)


def model_state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


# Two runs cover the four paths: m = 2 on every update; and m = 3 with k-step R-Drop
# (--rdrop-every 2), whose odd updates take the plain path (passes_for_step gives m = 1,
# the code path of --rdrop-alpha 0).
CONFIGS = {
    "m2": ["--rdrop-alpha", "3"],
    "m3_every2": ["--rdrop-alpha", "3", "--rdrop-passes", "3", "--rdrop-every", "2"],
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_two_processes_equal_one_process_with_update_freq_2(translation_bin, tmp_path, config):
    extra = [*NO_DROPOUT, *CONFIGS[config]]
    one_dir, two_dir = recording_user_dir(tmp_path / "one"), recording_user_dir(tmp_path / "two")
    # both at once: the test's wall time is mostly the processes' start-up
    one = start([BIN / "fairseq-train", *train_args(translation_bin, one_dir, tmp_path / "ckpt1", extra),
                 "--update-freq", "2"], tmp_path)
    two = start_torchrun(train_args(translation_bin, two_dir, tmp_path / "ckpt2", extra), tmp_path)
    log1, log2 = finish(one), finish(two)
    assert "distributed init (rank 1)" in log2 and "training on 2 devices" in log2

    # Per batch: rank r's batch of update u is the 1-process run's (2u + r)-th batch, and
    # every logging output is the same to fp32 rounding.
    rank0, rank1, single = records(two_dir, 0), records(two_dir, 1), records(one_dir, 0)
    assert len(rank0) == len(rank1) == UPDATES and len(single) == 2 * UPDATES
    interleaved = [row for pair in zip(rank0, rank1) for row in pair]
    worst = {}
    for two, one in zip(interleaved, single):
        assert two["ids"] == one["ids"] and two["update"] == one["update"] and two.keys() == one.keys()
        for k in set(one) - {"ids", "update", "param_sum"}:
            diff = abs(two[k] - one[k])
            worst[k] = max(worst.get(k, 0.0), diff)
            assert diff <= 1e-5 * max(1.0, abs(one[k])), (config, k, two, one)
    # the updates really moved the parameters (so equal parameters below are not trivial)
    assert len({r["param_sum"] for r in rank0}) == UPDATES

    rdrop_updates = [r["update"] for r in single if "rdrop_kl_loss" in r]
    every = 2 if config == "m3_every2" else 1
    assert rdrop_updates == [u for u in range(UPDATES) if u % every == 0 for _ in range(2)]
    # with dropout 0 the m copies are identical, so their KL is 0
    assert all(abs(r["rdrop_kl_loss"]) <= 1e-5 * r["rdrop_ntokens"] for r in single if "rdrop_kl_loss" in r)

    # Logged values (rounded by fairseq to 3-4 decimals): equal up to the last digit.
    logged1, logged2 = inner_stats(log1), inner_stats(log2)
    last1, last2 = last_train_stats(log1), last_train_stats(log2)
    assert len(logged1) == len(logged2) == UPDATES
    assert last1["num_updates"] == last2["num_updates"] == str(UPDATES)
    logged_diff = 0.0
    for two, one in [*zip(logged2, logged1), (last2, last1)]:
        assert two["num_updates"] == one["num_updates"]
        for k in ("loss", "nll_loss", "rdrop_kl_loss", "rdrop_objective"):
            if k in one:
                logged_diff = max(logged_diff, abs(float(two[k]) - float(one[k])))
                assert abs(float(two[k]) - float(one[k])) <= 1.001e-3, (config, k, two, one)

    # Final parameters: every tensor of both checkpoints, to fp32 rounding of its scale.
    p1, p2 = model_state(tmp_path / "ckpt1" / "checkpoint_last.pt"), model_state(tmp_path / "ckpt2" / "checkpoint_last.pt")
    assert p1.keys() == p2.keys()
    param_diff = 0.0
    for name in p1:
        scale = float(p1[name].float().abs().max())
        diff = float((p2[name].float() - p1[name].float()).abs().max()) if p1[name].numel() else 0.0
        param_diff = max(param_diff, diff)
        assert diff <= 1e-5 * max(1.0, scale), (config, name, diff)
    print(f"\n[{config}] 2 processes vs 1 process --update-freq 2, {UPDATES} updates: "
          f"max |diff| parameters {param_diff:.3g}; logged losses {logged_diff:.3g}; per-batch logging outputs "
          + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))


def test_dropout_on_logged_values_aggregate_the_ranks(translation_bin, tmp_path):
    user_dir = recording_user_dir(tmp_path)
    log = finish(start_torchrun(train_args(translation_bin, user_dir, tmp_path / "ckpt",
                                           ["--dropout", "0.3", "--rdrop-alpha", "3"]), tmp_path))
    ranks = records(user_dir, 0), records(user_dir, 1)
    logged = inner_stats(log)
    assert len(logged) == len(ranks[0]) == len(ranks[1]) == UPDATES

    ln2, worst, unweighted_gap = math.log(2), {}, 0.0
    for u, (row, r0, r1) in enumerate(zip(logged, *ranks)):
        assert r0["update"] == r1["update"] == u
        assert not set(r0["ids"]) & set(r1["ids"]), "ranks must train on different sentences"
        # gradients are all-reduced, so both replicas hold the same parameters
        assert r0["param_sum"] == pytest.approx(r1["param_sum"], rel=1e-6, abs=1e-6)
        assert r0["rdrop_kl_loss"] > 0 and r1["rdrop_kl_loss"] > 0
        both = lambda k: r0[k] + r1[k]
        aggregate = {
            "loss": both("loss") / both("sample_size") / ln2,
            "nll_loss": both("nll_loss") / both("ntokens") / ln2,
            "rdrop_kl_loss": both("rdrop_kl_loss") / both("rdrop_ntokens") / ln2,
            "rdrop_objective": both("rdrop_objective") / both("rdrop_sample_size") / ln2,
        }
        for k, value in aggregate.items():
            # fairseq rounds what it logs (loss to 3 decimals, rdrop_kl_loss to 4)
            diff = abs(float(row[k]) - value)
            worst[k] = max(worst.get(k, 0.0), diff)
            assert diff <= 0.5e-3 + 1e-5, (u, k, row[k], value)
        # the check discriminates: the unweighted mean of the ranks' own values differs
        per_rank = [r["loss"] / r["sample_size"] / ln2 for r in (r0, r1)]
        unweighted_gap = max(unweighted_gap, abs(sum(per_rank) / 2 - aggregate["loss"]))
    assert unweighted_gap > 2e-3
    assert float(last_train_stats(log)["rdrop_kl_loss"]) > 0
    print(f"\n[dropout 0.3, alpha 3] logged vs token-weighted aggregate of the 2 ranks, {UPDATES} "
          "updates: max |diff| " + ", ".join(f"{k} {v:.2g}" for k, v in worst.items())
          + f"; unweighted mean of the ranks' losses is off by up to {unweighted_gap:.3g}")


# ---- the same property for the R-Drop gradient with dropout on, in one process ------------
# The runs above compare gradients with dropout 0, where the KL term and its gradient are 0.
# With dropout on, fairseq's masks depend on the process, so the comparison moves here: a
# model whose "dropout" is keyed on (sentence id, copy index), so a sentence's copies get
# the same masks whichever batch holds it. The loss sums over sentences, each paired with
# its own copies inside one batch, so two half batches' gradients and logging outputs sum
# to the whole batch's: what DDP's all-reduce computes.
M = 3


class KeyedDropoutLM(torch.nn.Module):
    """Embedding -> keyed dropout -> output projection; fairseq model interface."""

    def __init__(self, vocab, dim=8):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, dim)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, sent_ids):
        h = self.embed(prev_output_tokens)
        masks = []
        for row, sid in enumerate(sent_ids.tolist()):
            # copies are interleaved: row b*M + k is copy k of sentence b (batch_layout)
            g = torch.Generator().manual_seed(1000 * sid + (row % M if self.training else 0))
            masks.append((torch.rand(h.shape[1:], generator=g) > 0.3).float() / 0.7)
        return self.out(h * torch.stack(masks)), None

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return torch.log_softmax(net_output[0].float(), -1)

    def get_targets(self, sample, net_output):
        return sample["target"]


def keyed_step(rows):
    from helpers import tiny_batch, tiny_task
    from rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop import RDropLabelSmoothedCrossEntropyCriterion

    task = tiny_task()
    full = tiny_batch(task, bsz=8, seed=5)
    full["target"][3, 4:] = task.target_dictionary.pad()
    full["net_input"]["sent_ids"] = torch.arange(8)
    sample = {"net_input": {k: v[rows] for k, v in full["net_input"].items()},
              "target": full["target"][rows]}
    sample["ntokens"] = int(sample["target"].ne(task.target_dictionary.pad()).sum())
    model = KeyedDropoutLM(len(task.target_dictionary)).train()
    crit = RDropLabelSmoothedCrossEntropyCriterion(
        task, False, 0.1, rdrop_alpha=3.0, rdrop_passes=M, rdrop_impl="reference", report_accuracy=True
    )
    loss, _, log = crit(model, sample)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return grads, {k: float(v) for k, v in log.items()}


def test_rdrop_gradient_and_logs_of_half_batches_sum_to_the_whole_batch():
    (g0, log0), (g1, log1) = keyed_step(list(range(4))), keyed_step(list(range(4, 8)))
    grads, log = keyed_step(list(range(8)))
    assert log["rdrop_kl_loss"] > 0 and grads.abs().sum() > 0
    torch.testing.assert_close(g0 + g1, grads, rtol=1e-5, atol=1e-6 * float(grads.abs().max()))
    assert log.keys() == log0.keys() == log1.keys()
    for k in log:
        assert log0[k] + log1[k] == pytest.approx(log[k], rel=1e-5), k
