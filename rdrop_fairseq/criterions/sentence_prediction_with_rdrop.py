"""``sentence_prediction_with_rdrop``: sentence-level R-Drop.

A superset of fairseq's ``sentence_prediction`` (every option, same logging) that adds the
R-Drop options and schedule of the sequence criterion (``schedule.py``) and a multi-label
head (with the ``sentence_prediction_multilabel`` task). The math is in
``rdrop_torch/sentence_loss.py``:

    loss = sum_k data_loss(copy k) + alpha_t * consistency(copies)

When R-Drop is off for a step (eval, alpha_t = 0, m = 1, a k-step off-update) a single-label
or regression step is exactly fairseq's ``sentence_prediction.forward`` (the same code).
"""
from dataclasses import dataclass, field

import torch
from fairseq.criterions.sentence_prediction import (
    SentencePredictionConfig,
    SentencePredictionCriterion,
)
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from rdrop_torch import sentence_loss as sl
from rdrop_torch.layout import duplicate_net_input

from ..fixes.replace_builtin import register_criterion_replacing
from ..metrics import log_rdrop_kl, per_copy_data_loss, rdrop_logging
from ..options import RDropOptions
from ..schedule import RDropSchedule

CRITERION_NAME = "sentence_prediction_with_rdrop"
DIVERGENCE_CHOICES = ChoiceEnum(["auto", "softmax", "sigmoid"])
MULTILABEL_LOSS_CHOICES = ChoiceEnum(list(sl.MULTILABEL_LOSSES))


@dataclass
class SentencePredictionWithRDropConfig(SentencePredictionConfig, RDropOptions):
    """Every field of fairseq's ``sentence_prediction`` plus R-Drop's."""

    rdrop_divergence: DIVERGENCE_CHOICES = field(
        default="auto",
        metadata={"help": "consistency term of a class head: 'softmax' (symmetric KL of the softmax), "
                  "'sigmoid' (symmetric Bernoulli KL per label), 'auto' (softmax single-label, "
                  "sigmoid multi-label); regression heads always use 1/2 (y_i - y_j)^2"},
    )
    multilabel_loss: MULTILABEL_LOSS_CHOICES = field(
        default="bce",
        metadata={"help": "per-copy loss of a multi-label head: 'bce' (binary CE with logits, summed "
                  "over labels) or 'mlcce' (log(1+sum_neg e^s) + log(1+sum_pos e^-s))"},
    )


def _head_kind(cfg, task):
    if cfg.regression_target:
        return "regression"
    return "multilabel" if getattr(task, "multilabel", False) else "classification"


@register_criterion_replacing(CRITERION_NAME, dataclass=SentencePredictionWithRDropConfig)
class SentencePredictionWithRDropCriterion(RDropSchedule, SentencePredictionCriterion):
    def __init__(self, cfg: SentencePredictionWithRDropConfig, task):
        super().__init__(cfg, task)
        self.kind = _head_kind(cfg, task)
        # keep_pred_and_targ: the report options of fairseq-fixed's sentence_prediction (not in 0.12.2)
        if self.kind == "multilabel" and getattr(self, "keep_pred_and_targ", False):
            raise ValueError(
                "--report-mcc / --report-acc-and-f1 / --report-pearson-and-spearman are single-label "
                "metrics; a multi-label task reports micro_f1, macro_f1 and exact_match itself"
            )
        self.divergence = sl.resolve_divergence(self.kind, str(cfg.rdrop_divergence))
        self.multilabel_loss = str(cfg.multilabel_loss)
        self.init_rdrop_schedule(
            cfg.rdrop_alpha, cfg.rdrop_passes, cfg.rdrop_every, cfg.rdrop_warmup_updates,
            plain_name="sentence_prediction",
        )

    def forward(self, model, sample, reduce=True):
        m, alpha = self.passes_for_step(model)
        if m == 1 and self.kind != "multilabel":
            return super().forward(model, sample, reduce=reduce)  # exactly fairseq's step
        assert (
            hasattr(model, "classification_heads")
            and self.classification_head_name in model.classification_heads
        ), f"model must provide sentence classification head for --criterion={CRITERION_NAME}"

        batch_size = sample["target"].size(0)
        net_input = sample["net_input"]
        if m > 1:
            self._check_model_once(model)
            net_input = duplicate_net_input(net_input, m, batch_size)
        logits, _ = model(
            **net_input, features_only=True, classification_head_name=self.classification_head_name
        )
        targets = model.get_targets(sample, [logits])
        if self.kind != "multilabel":
            targets = targets.view(-1)

        if m == 1:
            loss = sl.data_loss(self.kind, logits, targets, self.multilabel_loss)
            kl_loss = None
        else:
            loss, _, kl_loss = sl.sentence_rdrop_loss(
                logits, targets, m, alpha, self.kind, self.divergence, self.multilabel_loss
            )
        logging_output = {}
        logged_loss = per_copy_data_loss(loss, kl_loss, alpha, m)
        loss, logged_loss = self._add_head_regularizers(model, loss, logged_loss, logging_output)
        sample_size = batch_size  # of ONE copy, as fairseq's targets.numel() for one label each
        logging_output.update({
            "loss": logged_loss,
            "ntokens": sample["ntokens"],
            "nsentences": batch_size,
            "sample_size": sample_size,
        })
        if kl_loss is not None:
            logging_output.update(rdrop_logging(loss, kl_loss, sample_size, batch_size))
        self._log_predictions(logits, targets, m, model.training, logging_output)
        return loss, sample_size, logging_output

    def _add_head_regularizers(self, model, loss, logged_loss, logging_output):
        """fairseq's mha/ffn pruning regularizers, added once per step (they depend on
        parameters only, not on the copies)."""
        args = getattr(model, "args", None)
        for flag, fn_name, key in (
            ("mha_reg_scale_factor", "_get_adaptive_head_loss", "mha_reg_loss"),
            ("ffn_reg_scale_factor", "_get_adaptive_ffn_loss", "ffn_reg_loss"),
        ):
            if args is not None and getattr(args, flag, 0.0) != 0.0:
                reg = getattr(model, fn_name)()
                loss = loss + reg
                logged_loss = logged_loss + reg.data
                logging_output[key] = reg
        return loss, logged_loss

    def _log_predictions(self, logits, targets, m, training, logging_output):
        """``ncorrect`` (per copy: the mean over copies), and for multi-label heads in eval
        the per-label tp/fp/fn counts and exact matches (summable across workers)."""
        with torch.no_grad():
            if self.kind == "classification":
                hits = (logits.argmax(dim=-1) == targets.repeat_interleave(m, dim=0)).sum()
                logging_output["ncorrect"] = hits if m == 1 else hits.double() / m
            elif self.kind == "multilabel":
                tp, fp, fn, exact = sl.multilabel_counts(logits, targets.repeat_interleave(m, dim=0))
                # "accuracy" of a multi-label head is the exact-match rate.
                logging_output["ncorrect"] = exact if m == 1 else exact.double() / m
                if not training:
                    for i in range(tp.numel()):
                        logging_output[f"ml_tp_{i}"] = int(tp[i])
                        logging_output[f"ml_fp_{i}"] = int(fp[i])
                        logging_output[f"ml_fn_{i}"] = int(fn[i])

    # ----- metrics -----------------------------------------------------------------
    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        SentencePredictionCriterion.reduce_metrics(logging_outputs)
        log_rdrop_kl(logging_outputs)
        log_multilabel_f1(logging_outputs)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def log_multilabel_f1(logging_outputs):
    """micro_f1 / macro_f1 (x100) over the whole validation set: the counts are summed into
    hidden meters (names starting with "_" are not printed) and F1 is derived from them."""
    keys = {k for log in logging_outputs for k in log if k.startswith("ml_tp_")}
    if not keys:
        return
    n_labels = len(keys)
    for i in range(n_labels):
        for kind in ("tp", "fp", "fn"):
            metrics.log_scalar_sum(
                f"_ml_{kind}_{i}", sum(log.get(f"ml_{kind}_{i}", 0) for log in logging_outputs)
            )

    def f1(meters, which):
        counts = [[meters[f"_ml_{k}_{i}"].sum for i in range(n_labels)] for k in ("tp", "fp", "fn")]
        return round(100 * sl.f1_scores(*counts)[which], 2)

    metrics.log_derived("micro_f1", lambda meters: f1(meters, 0))
    metrics.log_derived("macro_f1", lambda meters: f1(meters, 1))
    exact = sum(log.get("ncorrect", 0) for log in logging_outputs)
    nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
    if nsentences > 0:  # the same number as "accuracy", under the name multi-label work uses
        metrics.log_scalar("exact_match", 100.0 * exact / nsentences, nsentences, round=2)
