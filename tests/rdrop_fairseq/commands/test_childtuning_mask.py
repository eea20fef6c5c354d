"""python -m rdrop_fairseq.childtuning_mask: its D mask against a brute-force Fisher, and the Fisher
summed over workers."""
import re

import numpy as np
import torch

from helpers import LS, childtuning_cfg
from rdrop_torch import childtuning as ct


def test_mask_command_equals_top_p_of_a_brute_force_fisher(translation_bin, childtuning_pretrained, childtuning_d_mask):
    """The command's mask against an independent Fisher: per batch, autograd of the batch's
    mean loss, each parameter's gradient clipped to norm 1 (torch's clip_grad_norm_, as the
    official code), squared, averaged; then numpy's percentile and >=."""
    from fairseq import checkpoint_utils, tasks, utils

    mask_path, out = childtuning_d_mask
    assert re.search(r"^total\s+\d+\s+\d+\s+0\.3\d*$", out, flags=re.M), out[-2000:]
    assert re.search(r"^encoder\.layers\.0\s", out, flags=re.M)

    c = childtuning_cfg(*LS, "--dropout", "0", "--max-tokens", "1500", "--seed", "1")
    c.task.data = str(translation_bin)
    task = tasks.setup_task(c.task)
    model, crit = task.build_model(c.model), task.build_criterion(c.criterion)
    model.load_state_dict(checkpoint_utils.load_checkpoint_to_cpu(str(childtuning_pretrained))["model"], model_cfg=c.model)
    task.load_dataset("train")
    # the batches fairseq-train would form (the same iterator arguments)
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=1500,
                                  max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions(), 1500),
                                  ignore_invalid_inputs=True, required_batch_size_multiple=8, seed=1,
                                  epoch=1).next_epoch_itr(shuffle=True)
    sel = [(n, q) for n, q in model.named_parameters() if re.search(r"\.layers\.\d+\.", n)]
    fisher = {n: torch.zeros(q.shape, dtype=torch.float64) for n, q in sel}
    trained = set()  # the blocks' parameters that get a gradient (not fairseq 0.12.2's fast-path copies)
    model.train()
    batches = 0
    for sample in itr:
        loss, sample_size, _ = crit(model, sample)
        grads = torch.autograd.grad(loss / sample_size, [q for _, q in sel], allow_unused=True)
        trained.update(n for (n, _), g in zip(sel, grads) if g is not None)
        for (n, q), g in zip(sel, grads):
            g = torch.zeros_like(q) if g is None else g.clone()
            holder = torch.nn.Parameter(q.detach().clone())
            holder.grad = g
            torch.nn.utils.clip_grad_norm_([holder], 1.0)
            fisher[n] += holder.grad.double() ** 2
        batches += 1
    fisher = {n: f for n, f in fisher.items() if n in trained}
    allv = np.concatenate([(f / batches).reshape(-1).numpy() for f in fisher.values()])
    polar = np.percentile(allv.astype(np.float32).astype(np.float64), 70)
    saved = torch.load(mask_path, weights_only=True)
    assert saved["batches"] == batches and set(saved["masks"]) == set(fisher)
    agree = total = 0
    for n, f in fisher.items():
        got = ct.unpack_bits(saved["masks"][n], f.shape)
        want = torch.from_numpy((f / batches).float().double().numpy() >= polar)
        agree += int(got.eq(want).sum())
        total += f.numel()
    # float32 (command) vs float64 (here) accumulation may flip entries at the threshold only
    assert total - agree <= 2, (total - agree, total)


def _fisher_sums(data, ckpt):
    """fisher_pass of the mask command on the tiny model (dropout 0: the batches' gradients
    do not depend on the worker's random stream)."""
    from fairseq import checkpoint_utils, tasks

    from rdrop_fairseq.commands.childtuning_mask import fisher_pass

    c = childtuning_cfg(*LS, "--dropout", "0", "--max-tokens", "1500", "--seed", "1")
    c.task.data = str(data)
    task = tasks.setup_task(c.task)
    model, crit = task.build_model(c.model), task.build_criterion(c.criterion)
    model.load_state_dict(checkpoint_utils.load_checkpoint_to_cpu(str(ckpt))["model"], model_cfg=c.model)
    names = [n for n, _ in model.named_parameters() if re.search(ct.PATTERNS["layers"], n)]
    acc = fisher_pass(c, task, model, crit, names, use_cuda=False)
    return acc.sums, acc.batches


def _fisher_worker(rank, world, port, data, ckpt, out):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    sums, batches = _fisher_sums(data, ckpt)
    if rank == 0:
        torch.save((sums, batches), out)
    torch.distributed.destroy_process_group()


def test_fisher_is_summed_over_workers(translation_bin, childtuning_pretrained, tmp_path):
    """Two gloo workers, each on its shard of the batches, all-reduce to the one-process Fisher."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_fisher_worker, args=(2, port, str(translation_bin), str(childtuning_pretrained), str(tmp_path / "two.pt")),
             nprocs=2, join=True)
    two, two_batches = torch.load(tmp_path / "two.pt", weights_only=True)
    one, one_batches = _fisher_sums(translation_bin, childtuning_pretrained)
    assert two_batches == one_batches == 9
    scale = max(float(v.max()) for v in one.values())
    for n in one:  # the same sum in another order
        torch.testing.assert_close(two[n], one[n], rtol=1e-4, atol=1e-6 * scale)
