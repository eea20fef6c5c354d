"""fairseq glue for ``adaptive_loss_with_rdrop``: R-Drop that keeps adaptive softmax cheap.

    loss = sum_k NLL_adaptive(copy k) + alpha_t * KL_adaptive

NLL_adaptive is fairseq's ``adaptive_loss``; KL_adaptive compares the m copies'
head distributions on every non-pad row and tail c's distributions on the rows
whose target is in c (see ``rdrop_torch/adaptive_softmax.py``). By the chain rule the full KL is
KL(head) + sum_c P_head(c) KL(tail_c); we weight tail c by 1[target in c]
instead, so tails are evaluated only where adaptive softmax evaluates them
anyway. It is an approximation with adaptive_loss's savings; the exact
full-vocabulary KL is ``label_smoothed_cross_entropy_with_rdrop``
(``--label-smoothing 0``), at the cost of (m * tokens) x V floats.

When R-Drop does not apply (eval, alpha 0, the off-steps of --rdrop-every, the
warm-up's first update) the step *is* fairseq's ``adaptive_loss``. The schedule
and option checks are those of ``label_smoothed_cross_entropy_with_rdrop``.
"""
import math
from dataclasses import dataclass

from fairseq import utils
from fairseq.criterions.adaptive_loss import AdaptiveLoss, AdaptiveLossConfig
from fairseq.logging import metrics

from rdrop_torch.adaptive_softmax import adaptive_rdrop_loss
from rdrop_torch.layout import duplicate_net_input

from ..fixes.replace_builtin import register_criterion_replacing
from ..metrics import log_rdrop_kl, per_copy_data_loss, rdrop_logging
from ..model_checks import unwrap_model
from ..options import RDropOptions
from ..schedule import RDropSchedule

CRITERION_NAME = "adaptive_loss_with_rdrop"


@dataclass
class AdaptiveLossWithRDropConfig(AdaptiveLossConfig, RDropOptions):
    """fairseq's adaptive_loss fields (sentence_avg, ddp_backend) plus R-Drop's."""


@register_criterion_replacing(CRITERION_NAME, dataclass=AdaptiveLossWithRDropConfig)
class AdaptiveLossWithRDrop(RDropSchedule, AdaptiveLoss):
    def __init__(self, task, sentence_avg, rdrop_alpha=0.0, rdrop_passes=2, rdrop_every=1,
                 rdrop_warmup_updates=0):
        super().__init__(task, sentence_avg)
        self.init_rdrop_schedule(rdrop_alpha, rdrop_passes, rdrop_every, rdrop_warmup_updates,
                                 plain_name="adaptive loss")

    @classmethod
    def build_criterion(cls, cfg, task):
        # adaptive_loss's own restriction: a tail without targets in a batch gets no
        # gradient, which PyTorch DDP (without unused-parameter search) rejects.
        if cfg.ddp_backend in {"c10d", "pytorch_ddp"}:
            raise ValueError(
                f"--criterion {CRITERION_NAME}, like adaptive_loss, does not work with "
                f"--ddp-backend {cfg.ddp_backend}; use --ddp-backend legacy_ddp"
            )
        return cls(task, cfg.sentence_avg, cfg.rdrop_alpha, cfg.rdrop_passes, cfg.rdrop_every,
                   cfg.rdrop_warmup_updates)

    def forward(self, model, sample, reduce=True):
        adaptive_softmax = getattr(unwrap_model(model).decoder, "adaptive_softmax", None)
        if adaptive_softmax is None:
            raise ValueError(
                f"--criterion {CRITERION_NAME} needs a model with adaptive softmax "
                "(--adaptive-softmax-cutoff); for a plain softmax use "
                "label_smoothed_cross_entropy_with_rdrop"
            )
        m, alpha = self.passes_for_step(model)
        if m == 1:
            return super().forward(model, sample, reduce=reduce)  # exactly adaptive_loss
        if not reduce:
            raise ValueError(f"{CRITERION_NAME} with R-Drop active supports reduce=True only")
        self._check_model_once(model)

        batch_size = sample["target"].size(0)
        net_output = model(**duplicate_net_input(sample["net_input"], m, batch_size))
        target = model.get_targets(sample, net_output).reshape(-1)  # one copy
        # The model's rows are batch-interleaved, (B, m, T, H); adaptive_rdrop_loss pairs copies
        # token by token, so hand adaptive softmax (B, T, m, H) rows: m consecutive copies
        # of every token, in the head and (selected in order) in every tail. One call on
        # the m copies: head on all rows, tail c on the rows with target in c.
        hidden = net_output[0]
        tokens = hidden.reshape(batch_size, m, -1, hidden.size(-1)).transpose(1, 2)
        logits, targets = adaptive_softmax(tokens, target.repeat_interleave(m))
        loss, nll, kl = adaptive_rdrop_loss(logits, targets, m, alpha, self.padding_idx)

        ntokens = utils.strip_pad(target, self.padding_idx).numel()
        sample_size = batch_size if self.sentence_avg else ntokens  # of ONE copy
        logging_output = {
            "loss": per_copy_data_loss(loss, kl, alpha, m),  # comparable with valid_loss
            "nll_loss": nll.data / m,  # per copy, so ppl is not the m-th power
            "ntokens": ntokens,
            "nsentences": batch_size,
            "sample_size": sample_size,
            **rdrop_logging(loss, kl, sample_size, ntokens),
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """adaptive_loss's metrics, with nll_loss always logged and ppl taken from it.

        On plain steps the loss is the NLL (no ``nll_loss`` key, as adaptive_loss);
        on R-Drop steps the logged loss is per copy without the KL, and ppl comes from
        ``nll_loss``.
        """
        loss_sum = utils.item(sum(log.get("loss", 0) for log in logging_outputs))
        nll_sum = utils.item(sum(log.get("nll_loss", log.get("loss", 0)) for log in logging_outputs))
        ntokens = utils.item(sum(log.get("ntokens", 0) for log in logging_outputs))
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))
        log_rdrop_kl(logging_outputs)
