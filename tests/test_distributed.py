"""Two gloo processes, each with half the batch, sum to one process on the whole batch.

fairseq 0.12 cannot run distributed training on CPU (it spawns one process per
CUDA device), so we call the criterion under torch.distributed directly, the way
fairseq's trainer does: per-worker forward/backward, then all-reduce of the
gradients and of the (summable) logging outputs.

Dropout draws different masks in different processes, so the model here uses a
deterministic "dropout" keyed on (sentence id, copy index): the two copies of a
sentence differ, and identically whichever process holds the sentence.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import tiny_batch, tiny_task

ALPHA, M = 3.0, 3


class KeyedDropoutLM(torch.nn.Module):
    """Embedding -> keyed dropout -> output projection; fairseq model interface."""

    def __init__(self, vocab, dim=8):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, dim)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, sent_ids):
        h = self.embed(prev_output_tokens)
        # copies are interleaved: row b*M + k is copy k of sentence b (batch_layout)
        copy = torch.arange(sent_ids.size(0)) % (M if self.training else 1)
        masks = []
        for sid, k in zip(sent_ids.tolist(), copy.tolist()):
            g = torch.Generator().manual_seed(1000 * sid + k)
            masks.append((torch.rand(h.shape[1:], generator=g) > 0.3).float() / 0.7)
        return self.out(h * torch.stack(masks)), None

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return torch.log_softmax(net_output[0].float(), -1)

    def get_targets(self, sample, net_output):
        return sample["target"]


def make_batch(task, rows):
    full = tiny_batch(task, bsz=8, seed=5)
    full["target"][3, 4:] = task.target_dictionary.pad()
    full["net_input"]["sent_ids"] = torch.arange(8)
    pick = lambda t: t[rows]
    part = {"net_input": {k: pick(v) for k, v in full["net_input"].items()}, "target": pick(full["target"])}
    part["ntokens"] = int(part["target"].ne(task.target_dictionary.pad()).sum())
    return part


def step(rows):
    from rdrop_fairseq.criterion import RDropLabelSmoothedCrossEntropyCriterion

    task = tiny_task()
    model = KeyedDropoutLM(len(task.target_dictionary)).train()
    crit = RDropLabelSmoothedCrossEntropyCriterion(
        task, False, 0.1, rdrop_alpha=ALPHA, rdrop_passes=M, rdrop_impl="reference", report_accuracy=True
    )
    loss, sample_size, log = crit(model, make_batch(task, rows))
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    stats = torch.tensor([float(log[k]) for k in sorted(log)], dtype=torch.float64)
    return grads, stats, sorted(log)


def worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    grads, stats, _ = step(list(range(rank * 4, rank * 4 + 4)))
    dist.all_reduce(grads)
    dist.all_reduce(stats)
    if rank == 0:
        torch.save({"grads": grads, "stats": stats}, out)
    dist.destroy_process_group()


def test_two_gloo_workers_sum_to_one_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    out = tmp_path / "reduced.pt"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(2, port, str(out)), nprocs=2, join=True)
    reduced = torch.load(out)

    grads, stats, keys = step(list(range(8)))
    assert "rdrop_kl_loss" in keys and "sample_size" in keys
    torch.testing.assert_close(reduced["grads"], grads, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reduced["stats"], stats, rtol=1e-5, atol=1e-6)
    assert grads.abs().sum() > 0 and stats[keys.index("rdrop_kl_loss")] > 0
