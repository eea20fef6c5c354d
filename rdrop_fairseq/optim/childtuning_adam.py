"""``childtuning_adam``: ChildTuning (Xu et al., EMNLP 2021) as a fairseq optimizer.

``childtuning_adam`` is fairseq's ``adam`` (AdamW-style decoupled weight decay, the same
options) whose ``step`` first masks the gradient (``rdrop_torch/childtuning.py``), then runs Adam's
step. Masking inside the optimizer's step places it where fairseq already is at one
update: after the micro-batches of ``--update-freq`` are summed, after the all-reduce over
workers, after the gradient is normalised, clipped and checked for overflow (so the mask
never changes the overflow check or the clipping, as in the official code, which masks
inside AdamW.step after clipping), and before Adam's moments. Weight decay is Adam's and so
applies to every parameter whatever the mask, as in the official code.

fairseq hands optimizers bare tensors (under ``--fp16``, one flat fp32 copy of all of them);
masks are per named parameter, so the plugin wraps ``Trainer._build_optimizer`` to publish
the trainer's parameter names and shapes while it builds the optimizer
(``fixes/trainer_parameter_names.py``). Outside fairseq's trainer pass ``param_names=`` to the
constructor.

The F-mode masks come from a generator seeded by (--seed, update number, parameter index):
the same on every worker and after a resume; the global RNG (dropout) is left alone. The
update number and the D mask are saved in the optimizer's state dict.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from omegaconf import II

from rdrop_torch import childtuning as ct

from ..fixes.encoder_fastpath import is_fastpath_copy
from ..fixes.trainer_parameter_names import published_named_shapes
from ..switches import NO_TRAINER_PATCH

logger = logging.getLogger(__name__)

OPTIMIZER_NAME = "childtuning_adam"
MASK_FORMAT = "rdrop_fairseq.childtuning_mask/1"  # the file format's name: unchanged since the first mask files
STATE_KEY = "childtuning"
MASK_COMMAND = "python -m rdrop_fairseq.childtuning_mask <the same fairseq-train arguments>"


@dataclass
class ChildTuningAdamConfig(FairseqAdamConfig):
    childtuning_mode: ChoiceEnum(["F", "D"]) = field(
        default="F",
        metadata={"help": "F: a fresh Bernoulli(p) gradient mask every update, rescaled by 1/p; "
                  "D: the fixed top-p Fisher mask read from --childtuning-mask, not rescaled"},
    )
    childtuning_reserve_p: float = field(
        default=0.3,
        metadata={"help": "p in (0, 1]: F: keep probability of each gradient entry; D: fraction "
                  "of the masked parameters' entries kept (the official run.sh uses 0.3)"},
    )
    childtuning_params: ChoiceEnum(["official", "layers", "encoder_layers", "all"]) = field(
        default="official",
        metadata={"help": "parameters masked (others are updated as by plain adam): layers = "
                  "every numbered transformer block (encoder.layers.N., decoder.layers.N., "
                  "encoder.sentence_encoder.layers.N.), encoder_layers = only the encoder's, "
                  "all = every parameter; official = as the AliceMind code: all for F, layers for D"},
    )
    childtuning_params_regex: Optional[str] = field(
        default=None,
        metadata={"help": "a regex (re.search on fairseq parameter names) choosing the masked "
                  "parameters; overrides --childtuning-params"},
    )
    childtuning_mask: Optional[str] = field(
        default=None,
        metadata={"help": "D mode: the mask file written by python -m rdrop_fairseq.childtuning_mask "
                  "(which writes to this path)"},
    )
    childtuning_fisher_clip_norm: float = field(
        default=1.0,
        metadata={"help": "mask command: clip each parameter's per-batch gradient to this norm "
                  "before squaring, as the official code (HF max_grad_norm, default 1.0); 0: off"},
    )
    childtuning_fisher_batches: int = field(
        default=0,
        metadata={"help": "mask command: number of training batches in the Fisher pass "
                  "(0: one epoch, as the official code)"},
    )
    seed: int = II("common.seed")


def select_masked(names, pattern):
    """Which of the named parameters ChildTuning masks: those the pattern selects, never fairseq
    0.12.2's fast-path copies of its encoder layers' weights (``fixes/encoder_fastpath.py``).

    Training never uses the copies (their .grad stays None). Selected, they would enter the D
    mask's percentile with a zero Fisher (as many entries as the layer's own attention and FFN
    weights, so the mask would keep far more than the fraction p of the weights that train) and
    the mask file (which would then not fit the same model under fairseq-fixed, which has no such
    parameters)."""
    return [s and not is_fastpath_copy(n) for n, s in zip(names, ct.select(names, pattern))]


# ---- the mask --------------------------------------------------------------------------
def load_mask_file(path, named_shapes, selected, reserve_p):
    """Read a D mask and check it against the model: {name: bool tensor} for the selected
    parameters. Every mismatch names the option and the parameter."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--childtuning-mask {path}: no such file; create it with {MASK_COMMAND}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"--childtuning-mask {path}: not a readable torch file ({e})") from e
    if not isinstance(obj, dict) or obj.get("format") != MASK_FORMAT:
        raise ValueError(f"--childtuning-mask {path}: not a ChildTuning mask file (format {MASK_FORMAT})")
    if abs(float(obj["reserve_p"]) - float(reserve_p)) > 1e-9:
        raise ValueError(
            f"--childtuning-mask {path} was computed with reserve_p {obj['reserve_p']}, but "
            f"--childtuning-reserve-p is {reserve_p}"
        )
    return masks_from_state(obj, named_shapes, selected, f"--childtuning-mask {path}")


def masks_from_state(obj, named_shapes, selected, where):
    shapes = dict(named_shapes)
    want = [n for (n, _), s in zip(named_shapes, selected) if s]
    unknown = [n for n in obj["shapes"] if n not in shapes]
    if unknown:
        raise ValueError(f"{where}: parameter {unknown[0]!r} (and {len(unknown) - 1} more) is not in the model")
    if set(obj["shapes"]) != set(want):
        missing = [n for n in want if n not in obj["shapes"]]
        extra = [n for n in obj["shapes"] if n not in want]
        raise ValueError(
            f"{where}: masks {len(obj['shapes'])} parameters, but --childtuning-params/"
            f"--childtuning-params-regex select {len(want)} (missing e.g. {missing[:1]}, extra e.g. {extra[:1]}); "
            "recompute it with `python -m rdrop_fairseq.childtuning_mask` for this model and these options "
            "(masks made on fairseq 0.12.2 before the plugin left out its untrained fast-path copies land here too)"
        )
    masks = {}
    for n in want:
        if tuple(obj["shapes"][n]) != tuple(shapes[n]):
            raise ValueError(f"{where}: {n!r} has shape {tuple(obj['shapes'][n])}, the model's {tuple(shapes[n])}")
        masks[n] = ct.unpack_bits(obj["masks"][n], shapes[n])
    return masks


def mask_state(masks, reserve_p, **extra):
    """The mask's storable form (the file and the checkpoint's optimizer state)."""
    return dict(
        format=MASK_FORMAT,
        reserve_p=float(reserve_p),
        shapes={n: list(m.shape) for n, m in masks.items()},
        masks={n: ct.pack_bits(m) for n, m in masks.items()},
        **extra,
    )


class ChildTuningMixin:
    """Mask the gradient, then the base FairseqOptimizer's step. Combine with any
    FairseqOptimizer: ``class X(ChildTuningMixin, FairseqAdam)``."""

    def __init__(self, cfg, params, param_names=None):
        params = list(params)
        if any(isinstance(p, dict) for p in params):
            raise ValueError("childtuning: parameter groups are not supported; pass tensors")
        super().__init__(cfg, params)
        ct.check_reserve_p(cfg.childtuning_reserve_p)
        self.mode = str(cfg.childtuning_mode)
        self.reserve_p = float(cfg.childtuning_reserve_p)
        self.seed = int(cfg.seed)
        self.updates = 0
        if self.mode == "F" and cfg.childtuning_mask:
            raise ValueError("--childtuning-mask is for --childtuning-mode D (F draws a new mask every update)")
        if self.mode == "D" and not cfg.childtuning_mask:
            raise ValueError(f"--childtuning-mode D needs --childtuning-mask; create the file with {MASK_COMMAND}")

        if param_names is not None and len(param_names) != len(params):
            raise ValueError(f"childtuning: {len(param_names)} param_names for {len(params)} parameters")
        named = [(n, tuple(p.shape)) for n, p in zip(param_names, params)] if param_names else published_named_shapes()
        if named is None:
            raise ValueError(
                f"childtuning: parameter names unknown (leave {NO_TRAINER_PATCH} unset and build the "
                "optimizer through fairseq's Trainer, "
                "or pass param_names=; --ddp-backend fully_sharded is not supported)"
            )
        pattern = ct.resolve_pattern(self.mode, str(cfg.childtuning_params), cfg.childtuning_params_regex)
        selected = select_masked([n for n, _ in named], pattern)
        if not any(selected):
            opt = "--childtuning-params-regex" if cfg.childtuning_params_regex else "--childtuning-params"
            value = cfg.childtuning_params_regex or str(cfg.childtuning_params)
            raise ValueError(f"{opt} {value!r}: matches none "
                             f"of the model's {len(named)} parameters (e.g. {named[0][0]!r})")
        self._params = params
        self._generators = {}  # one per device, re-seeded for every (update, parameter)
        self._segments = self._layout(params, named, selected)
        self.named_shapes, self.selected = named, selected
        self.d_masks = None
        if self.mode == "D":
            self._set_d_masks(load_mask_file(cfg.childtuning_mask, named, selected, self.reserve_p))
        n_sel = sum(s for s in selected)
        numel = sum(_numel(s) for (_, s), k in zip(named, selected) if k)
        copies = sum(is_fastpath_copy(n) for n, _ in named)
        logger.info(f"ChildTuning-{self.mode}: p={self.reserve_p}, masking {n_sel}/{len(named) - copies} "
                    f"parameters ({numel} entries) matching {pattern!r}"
                    + (f"; {copies} untrained fast-path copies of fairseq 0.12.2's encoder layers left "
                       "alone" if copies else ""))

    @staticmethod
    def _layout(params, named, selected):
        """(optimizer tensor index, offset, numel, parameter index) of each selected named
        parameter: one tensor each, or fairseq --fp16's single flat fp32 copy."""
        sizes = [_numel(s) for _, s in named]
        if len(params) == len(named) and all(tuple(p.shape) == s for p, (_, s) in zip(params, named)):
            return [(i, 0, sizes[i], i) for i in range(len(named)) if selected[i]]
        if len(params) == 1 and params[0].numel() == sum(sizes):
            offsets = [sum(sizes[:i]) for i in range(len(sizes))]
            return [(0, offsets[i], sizes[i], i) for i in range(len(named)) if selected[i]]
        raise ValueError(
            f"childtuning: the optimizer got {len(params)} tensors ({sum(p.numel() for p in params)} "
            f"entries) for the model's {len(named)} parameters ({sum(sizes)} entries); unsupported layout"
        )

    def _set_d_masks(self, masks):
        self.d_masks = masks
        self._d_state = mask_state(masks, self.reserve_p)  # packed once, saved with every checkpoint
        # one multiplier per optimizer tensor, on its device (ones where nothing is masked)
        self._d_tensor_masks = {}
        for j, off, n, i in self._segments:
            p = self._params[j]
            if j not in self._d_tensor_masks:
                self._d_tensor_masks[j] = torch.ones(p.numel(), dtype=torch.bool, device=p.device)
            self._d_tensor_masks[j][off:off + n] = masks[self.named_shapes[i][0]].reshape(-1).to(p.device)

    def apply_mask_(self):
        """Mask the gradients for the update about to be taken (number ``self.updates``)."""
        if self.mode == "D":
            for j, m in self._d_tensor_masks.items():
                g = self._params[j].grad
                if g is not None:
                    g.view(-1).mul_(m.to(g.dtype))
            return
        if self.reserve_p == 1.0:
            return
        for j, off, n, i in self._segments:
            g = self._params[j].grad
            if g is None:
                continue
            gen = self._generators.get(g.device)
            if gen is None:
                gen = self._generators[g.device] = torch.Generator(device=g.device)
            gen.manual_seed(ct.step_seed(self.seed, self.updates, i))
            keep = ct.draw_keep(n, self.reserve_p, gen, g.device)
            ct.mask_gradient_(g.view(-1)[off:off + n], keep, self.reserve_p)

    def step(self, closure=None, scale=1.0, groups=None):
        self.apply_mask_()
        super().step(closure, scale=scale, groups=groups)
        self.updates += 1

    def state_dict(self):
        state = super().state_dict()
        ours = dict(mode=self.mode, reserve_p=self.reserve_p, seed=self.seed, updates=self.updates)
        if self.d_masks is not None:
            ours["d_mask"] = self._d_state
        state[STATE_KEY] = ours
        return state

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        state_dict = dict(state_dict)
        ours = state_dict.pop(STATE_KEY, None)
        super().load_state_dict(state_dict, optimizer_overrides)
        if ours is None:
            logger.warning("childtuning: the checkpoint's optimizer state has no ChildTuning state; "
                           "F masks restart at update 0")
            return
        self.updates = int(ours["updates"])
        if ours["mode"] != self.mode or ours["seed"] != self.seed or ours["reserve_p"] != self.reserve_p:
            logger.warning(f"childtuning: resuming a run with mode {ours['mode']} p {ours['reserve_p']} "
                           f"seed {ours['seed']} under {self.mode} {self.reserve_p} {self.seed}")
        if self.mode == "D" and "d_mask" in ours:
            saved = masks_from_state(ours["d_mask"], self.named_shapes, self.selected, "the checkpoint's D mask")
            if any(not torch.equal(saved[n], self.d_masks[n]) for n in saved):
                logger.warning("childtuning: --childtuning-mask differs from the mask this run was "
                               "trained with; continuing with the checkpoint's")
            self._set_d_masks(saved)


def _numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


@register_optimizer(OPTIMIZER_NAME, dataclass=ChildTuningAdamConfig)
class ChildTuningAdam(ChildTuningMixin, FairseqAdam):
    """fairseq's adam with ChildTuning's gradient mask (see the module docstring)."""
