"""Compute the ChildTuning-D mask: ``python -m rdrop_fairseq.childtuning_mask <fairseq-train args>``.

Takes the fine-tuning command line itself (fairseq's training parser: task, data, arch,
criterion, batch size, ``--restore-file``/``--finetune-from-model`` for the pre-trained
weights, ``--optimizer childtuning_adam --childtuning-mode D --childtuning-reserve-p P
--childtuning-mask OUT``), builds the task, model and criterion as fairseq-train does, runs
one pass over the training batches with the pre-trained weights in train mode (as the
official code: dropout on, each selected parameter's batch gradient clipped to
--childtuning-fisher-clip-norm), and writes the top-p Fisher mask to ``--childtuning-mask``.
Under fairseq's distributed launch each worker takes its shard of the batches and the
Fisher sums and batch counts are all-reduced. Prints the kept fraction per group.

Training does not run this by itself when the file is missing: the optimizer is built
inside fairseq's trainer at a point where the weights may be the pre-trained ones or a
resumed run's, and one explicit, inspectable file per (checkpoint, data, p, seed) is
reused by every run that shares it (e.g. ChildTuning-D and R-Drop + ChildTuning-D).
"""
import logging
import os
import re
import sys
from types import SimpleNamespace

import numpy as np
import torch
from fairseq import checkpoint_utils, distributed_utils, options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from rdrop_torch import childtuning as ct

from ..optim.childtuning_adam import mask_state, select_masked

logger = logging.getLogger(__name__)


def group_of(name):
    """Report groups: one per transformer block, else the parameter's module path."""
    m = re.match(r"^(.*?layers\.\d+)\.", name)
    return m.group(1) if m else name.rsplit(".", 1)[0]


def report(masks, threshold, batches):
    groups = {}
    for n, m in masks.items():
        kept, total = groups.get(group_of(n), (0, 0))
        groups[group_of(n)] = (kept + int(m.sum()), total + m.numel())
    width = max(len(g) for g in groups)
    lines = [f"{'group':<{width}}  {'kept':>10}  {'entries':>10}  fraction"]
    for g, (kept, total) in groups.items():
        lines.append(f"{g:<{width}}  {kept:>10}  {total:>10}  {kept / total:.4f}")
    kept = sum(k for k, _ in groups.values())
    total = sum(t for _, t in groups.values())
    lines.append(f"{'total':<{width}}  {kept:>10}  {total:>10}  {kept / total:.4f}")
    lines.append(f"Fisher threshold {threshold:.6g} over {batches} batches")
    return "\n".join(lines)


def weights_path(cfg):
    """The checkpoint fairseq-train would start from (its load_checkpoint's resolution)."""
    ck = cfg.checkpoint
    if ck.finetune_from_model:
        return ck.finetune_from_model
    if ck.restore_file == "checkpoint_last.pt":
        path = os.path.join(ck.save_dir, "checkpoint_last.pt")
        return path if os.path.exists(path) else None
    return ck.restore_file


def _data_parallel():
    """(world size, rank) of fairseq's data-parallel group; (1, 0) when not distributed."""
    if not torch.distributed.is_initialized():
        return 1, 0
    return distributed_utils.get_data_parallel_world_size(), distributed_utils.get_data_parallel_rank()


def fisher_pass(cfg, task, model, criterion, names, use_cuda):
    ocfg, dcfg = cfg.optimizer, cfg.dataset
    task.load_dataset(dcfg.train_subset, epoch=1, combine=True)
    itr = task.get_batch_iterator(
        dataset=task.dataset(dcfg.train_subset),
        max_tokens=dcfg.max_tokens,
        max_sentences=dcfg.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions(), dcfg.max_tokens),
        ignore_invalid_inputs=True,
        required_batch_size_multiple=dcfg.required_batch_size_multiple,
        seed=cfg.common.seed,
        num_shards=_data_parallel()[0],
        shard_id=_data_parallel()[1],
        num_workers=dcfg.num_workers,
        epoch=1,
        disable_iterator_cache=True,
    ).next_epoch_itr(shuffle=True)
    params = dict(model.named_parameters())
    acc = ct.FisherAccumulator(clip_norm=ocfg.childtuning_fisher_clip_norm)
    backward = SimpleNamespace(backward=lambda loss: loss.backward())
    for i, sample in enumerate(itr):
        if ocfg.childtuning_fisher_batches and i >= ocfg.childtuning_fisher_batches:
            break
        if not sample:
            continue
        if use_cuda:
            sample = utils.move_to_cuda(sample)
        model.zero_grad()
        # the task's own training step (train mode, dropout on), without an update
        _, sample_size, _ = task.train_step(sample, model, criterion, backward, update_num=0)
        scale = 1.0 / max(float(sample_size), 1.0)  # fairseq's per-update normalisation
        acc.add({n: params[n].grad * scale if params[n].grad is not None else torch.zeros_like(params[n])
                 for n in names})
    model.zero_grad()
    if _data_parallel()[0] > 1:
        group = distributed_utils.get_data_parallel_group()
        for n in names:
            acc.sums.setdefault(n, torch.zeros_like(params[n], dtype=torch.float))
            distributed_utils.all_reduce(acc.sums[n], group)
        count = torch.tensor([float(acc.batches)], device=next(model.parameters()).device)
        distributed_utils.all_reduce(count, group)
        acc.batches = int(count.item())
    return acc


def main(cfg):
    utils.import_user_module(cfg.common)
    ocfg = cfg.optimizer
    np.random.seed(cfg.common.seed)
    utils.set_torch_seed(cfg.common.seed)
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    if use_cuda:
        torch.cuda.set_device(cfg.distributed_training.device_id)

    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    path = weights_path(cfg)
    if path:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
        logger.info(f"Fisher of the weights in {path}")
    else:
        logger.warning("no --restore-file/--finetune-from-model: the Fisher of the freshly initialised model")
    if use_cuda:
        model, criterion = model.cuda(), criterion.cuda()

    named = [n for n, p in model.named_parameters() if p.requires_grad]
    pattern = ct.resolve_pattern("D", str(ocfg.childtuning_params), ocfg.childtuning_params_regex)
    names = [n for n, s in zip(named, select_masked(named, pattern)) if s]
    if not names:
        opt = "--childtuning-params-regex" if ocfg.childtuning_params_regex else "--childtuning-params"
        raise ValueError(f"{opt}: matches none of the model's {len(named)} parameters")

    acc = fisher_pass(cfg, task, model, criterion, names, use_cuda)
    fisher = {n: acc.sums[n].cpu() / acc.batches for n in names}
    masks, threshold = ct.top_p_masks(fisher, ocfg.childtuning_reserve_p)
    if distributed_utils.is_master(cfg.distributed_training):
        os.makedirs(os.path.dirname(os.path.abspath(ocfg.childtuning_mask)), exist_ok=True)
        torch.save(mask_state(masks, ocfg.childtuning_reserve_p, threshold=threshold, batches=acc.batches,
                              fisher_clip_norm=float(ocfg.childtuning_fisher_clip_norm),
                              seed=int(cfg.common.seed), pattern=pattern), ocfg.childtuning_mask)
        print(report(masks, threshold, acc.batches), flush=True)
        logger.info(f"wrote {ocfg.childtuning_mask}")


def check_args(cfg):
    ocfg = cfg.optimizer
    if not str(ocfg._name).startswith("childtuning"):
        raise ValueError(f"--optimizer {ocfg._name}: use --optimizer childtuning_adam with --childtuning-mode D")
    if str(ocfg.childtuning_mode) != "D":
        raise ValueError(f"--childtuning-mode {ocfg.childtuning_mode}: the mask command is for mode D")
    if not ocfg.childtuning_mask:
        raise ValueError("--childtuning-mask: give the path to write the mask to")
    ct.check_reserve_p(ocfg.childtuning_reserve_p)
    ct.resolve_pattern("D", str(ocfg.childtuning_params), ocfg.childtuning_params_regex)


def cli_main(argv=None):
    # force: importing the plugin imported fairseq, whose import may have configured logging already
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        level=logging.INFO, stream=sys.stdout, force=True)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=argv)
    cfg = convert_namespace_to_omegaconf(args)
    try:
        check_args(cfg)
    except ValueError as e:
        parser.error(str(e))
    distributed_utils.call_main(cfg, main)
