"""``label_smoothed_cross_entropy_with_rdrop``: config, registration, batch duplication, metrics.

The math is in ``rdrop_torch``: ``rdrop_loss_reference`` (any ``get_normalized_probs``) and
``fused_rdrop_loss`` (chunked, from logits). This module decides *when* R-Drop applies
and feeds the model output to one of them:

    loss = sum_k LS-NLL(copy k) + alpha_t * 1/(m(m-1)) * sum_{i != j} KL(P_i || P_j)

The m copies are interleaved (``rdrop_torch/layout.py``): sentence b's copy k is row b*m + k of
every batch-major input and of the output, which keeps fairseq's longest-first order
(LSTM encoders pack with enforce_sorted=True).

R-Drop applies on a training update u when ``model.training``, alpha_t > 0,
m >= 2 and u % rdrop_every == 0, where alpha_t = alpha * min(1, u / warmup)
(alpha when warmup is 0). Otherwise the step is exactly fairseq's
``label_smoothed_cross_entropy`` (same code path, no duplication).
"""
import logging
from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.dataclass import ChoiceEnum

from rdrop_torch.fused import fused_rdrop_loss
from rdrop_torch.layout import duplicate_net_input
from rdrop_torch.token_loss import rdrop_loss_reference

from ..fixes.replace_builtin import register_criterion_replacing
from ..log_probs import normalized_log_probs
from ..metrics import log_rdrop_kl, per_copy_data_loss, rdrop_logging
from ..model_checks import has_plain_softmax_output
from ..options import RDropOptions
from ..schedule import RDropSchedule

logger = logging.getLogger(__name__)

CRITERION_NAME = "label_smoothed_cross_entropy_with_rdrop"
RDROP_IMPL_CHOICES = ChoiceEnum(["auto", "fused", "reference"])
_compile_warned = False


def _warn_compile_once():
    global _compile_warned
    if not _compile_warned:
        _compile_warned = True
        logger.warning("--rdrop-compile has no effect; removed because it measured no gain "
                       "over the eager fused loss (docs/performance.md)")


@dataclass
class RDropLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig, RDropOptions):
    """Every field of fairseq's built-in R-Drop criterion, plus the paper's ablations."""

    rdrop_impl: RDROP_IMPL_CHOICES = field(
        default="auto",
        metadata={"help": "loss implementation: 'fused' (chunked, from logits, low memory), "
                  "'reference' (through get_normalized_probs, e.g. adaptive softmax), "
                  "'auto' (fused when the model's output is a plain softmax over logits)"},
    )
    rdrop_compile: bool = field(
        default=False,
        metadata={"help": "no effect (accepted so that command lines and YAMLs that set it still load): "
                  "the fused loss runs eager, which measures as fast as torch.compile "
                  "(docs/performance.md)"},
    )


@register_criterion_replacing(CRITERION_NAME, dataclass=RDropLabelSmoothedCrossEntropyConfig)
class RDropLabelSmoothedCrossEntropyCriterion(RDropSchedule, LabelSmoothedCrossEntropyCriterion):
    def __init__(
        self,
        task,
        sentence_avg,
        label_smoothing,
        ignore_prefix_size=0,
        report_accuracy=False,
        rdrop_alpha=0.0,
        rdrop_passes=2,
        rdrop_every=1,
        rdrop_warmup_updates=0,
        rdrop_impl="auto",
        rdrop_compile=False,
    ):
        super().__init__(
            task,
            sentence_avg,
            label_smoothing,
            ignore_prefix_size=ignore_prefix_size,
            report_accuracy=report_accuracy,
        )
        self.init_rdrop_schedule(rdrop_alpha, rdrop_passes, rdrop_every, rdrop_warmup_updates)
        self.rdrop_impl = str(rdrop_impl)
        if rdrop_compile:
            _warn_compile_once()

    # ----- forward ---------------------------------------------------------------
    def forward(self, model, sample, reduce=True, net_output=None):
        """Loss, sample size (of ONE copy) and logging outputs; ``net_output`` as the built-in."""
        m, alpha = self.passes_for_step(model)
        batch_size = sample["target"].size(0)
        if net_output is None:
            net_input = sample["net_input"]
            if m > 1:
                self._check_model_once(model)
                net_input = duplicate_net_input(net_input, m, batch_size)
            net_output = model(**net_input)
        elif net_output[0].size(0) != batch_size * m:
            # The built-in's API lets callers pass a precomputed output; trust its batch
            # (its copies must be interleaved, as duplicate_net_input makes them).
            m = net_output[0].size(0) // batch_size
            alpha = alpha if m > 1 else 0.0

        if m == 1:
            loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
            kl_loss, total_nll = None, nll_loss
        else:
            if not reduce:
                raise ValueError(f"{CRITERION_NAME} with R-Drop active supports reduce=True only")
            loss, total_nll, kl_loss = self._rdrop_loss(model, net_output, sample, m, alpha)
            nll_loss = total_nll / m  # per copy, so ppl is not squared

        sample_size = batch_size if self.sentence_avg else sample["ntokens"]
        logging_output = {
            # Logged per copy and without the KL term, so train loss reads on the same scale
            # as the baseline's and as valid_loss; the optimised value is rdrop_objective.
            "loss": per_copy_data_loss(loss, kl_loss, alpha, m),
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": batch_size,
            "sample_size": sample_size,
        }
        if kl_loss is not None:
            logging_output.update(rdrop_logging(loss, kl_loss, sample_size, sample["ntokens"]))
        if self.report_accuracy:
            n_correct, total = self._accuracy(model, net_output, sample, m)
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(total.data)
        return loss, sample_size, logging_output

    def _target(self, model, net_output, sample):
        """Target of ONE copy, (B, T); ignored prefix positions become padding.

        Masking instead of slicing (what fairseq does) keeps the logits contiguous
        and makes the KL skip the prefix too (the built-in's KL mask breaks there).
        """
        target = model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            target = target.clone()
            target[:, : self.ignore_prefix_size] = self.padding_idx
        return target

    def get_lprobs_and_target(self, model, net_output, sample):
        """fairseq's, with log-probs that are differentiable for adaptive softmax too."""
        lprobs = normalized_log_probs(model, net_output)
        target = model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            lprobs = lprobs[:, self.ignore_prefix_size :, :].contiguous()
            target = target[:, self.ignore_prefix_size :].contiguous()
        return lprobs.view(-1, lprobs.size(-1)), target.view(-1)

    def use_fused(self, model):
        if self.rdrop_impl == "reference":
            return False
        plain = has_plain_softmax_output(model)
        if self.rdrop_impl == "fused" and not plain:
            raise ValueError(
                "--rdrop-impl fused needs a model whose get_normalized_probs is a plain "
                f"softmax over net_output[0]; {type(model).__name__} overrides it or uses "
                "adaptive softmax. Use --rdrop-impl auto or reference."
            )
        return plain

    def _rdrop_loss(self, model, net_output, sample, m, alpha):
        target = self._target(model, net_output, sample)
        if self.use_fused(model):
            return fused_rdrop_loss(net_output[0], target, m, alpha, self.eps, self.padding_idx)
        lprobs = normalized_log_probs(model, net_output)
        return rdrop_loss_reference(lprobs, target, m, alpha, self.eps, self.padding_idx)

    def _accuracy(self, model, net_output, sample, m):
        if m == 1:
            return self.compute_accuracy(model, net_output, sample)
        # (m*B, T), interleaved like the output: row b*m + k is copy k of sentence b
        target = self._target(model, net_output, sample).repeat_interleave(m, dim=0)
        with torch.no_grad():  # argmax of logits == argmax of log-probs, no V-sized copy
            scores = net_output[0] if self.use_fused(model) else normalized_log_probs(model, net_output)
            pred = scores.argmax(-1).view_as(target)
        mask = target.ne(self.padding_idx)
        return pred.masked_select(mask).eq(target.masked_select(mask)).sum(), mask.sum()

    # ----- metrics -----------------------------------------------------------------
    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        log_rdrop_kl(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
