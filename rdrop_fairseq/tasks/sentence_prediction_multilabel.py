"""``sentence_prediction_multilabel``: fairseq's sentence_prediction with multi-hot targets.

Data folder layout (input0/, input1/ exactly as fairseq's sentence_prediction):

    <data>/input0/{dict.txt, <split>.bin/.idx}   binarized sentences (fairseq-preprocess --only-source)
    <data>/label/labels.txt                      the label dictionary: one label name per line, in index order
    <data>/label/<split>.labels                  one label set per sentence: names separated by spaces or commas

Targets are float multi-hot rows (B, num_classes). Use it with ``--criterion
sentence_prediction_with_rdrop``, which then trains the head with a multi-label loss and reports
micro_f1, macro_f1 and exact_match (decision: logit > 0) on validation. Every label line is
checked when a split is loaded: an unknown label, an empty line or a line count different from
the inputs' is an error naming the file and line.
"""
import contextlib
import logging
import os
import re
from dataclasses import dataclass

import torch
from fairseq.data import BaseWrapperDataset, Dictionary
from fairseq.tasks import register_task
from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask
from omegaconf import OmegaConf, open_dict

logger = logging.getLogger(__name__)

TASK_NAME = "sentence_prediction_multilabel"
LABELS_FILE = "labels.txt"
_SEPARATORS = re.compile(r"[,\s]+")


class LabelFileError(ValueError):
    """A label file that does not match the label dictionary or the inputs."""


def read_label_names(path):
    """Label names in index order; blank or repeated names are errors (naming the line)."""
    names, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            name = line.strip()
            if not name or _SEPARATORS.search(name):
                raise LabelFileError(
                    f"{path}:{lineno}: a label name must be one non-empty word without commas, got {line!r}"
                )
            if name in seen:
                raise LabelFileError(f"{path}:{lineno}: label {name!r} repeats line {seen[name]}")
            seen[name] = lineno
            names.append(name)
    if not names:
        raise LabelFileError(f"{path}: no labels")
    return names


def read_multi_hot(path, names, expected_lines):
    """Multi-hot rows (lists of 0./1.) of ``path``, one per line, checked against ``names``."""
    index = {name: i for i, name in enumerate(names)}
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            labels = [x for x in _SEPARATORS.split(line.strip()) if x]
            if not labels:
                raise LabelFileError(
                    f"{path}:{lineno}: empty label set (every sentence needs at least one label; "
                    f"add a label such as 'neutral' to {LABELS_FILE} for sentences without one)"
                )
            row = [0.0] * len(names)
            for label in labels:
                if label not in index:
                    raise LabelFileError(
                        f"{path}:{lineno}: label {label!r} is not in the label dictionary "
                        f"({len(names)} labels in {LABELS_FILE})"
                    )
                row[index[label]] = 1.0
            rows.append(row)
    if len(rows) != expected_lines:
        raise LabelFileError(
            f"{path} has {len(rows)} lines but the inputs of this split have {expected_lines} sentences"
        )
    return rows


class MultiHotTargetDataset(BaseWrapperDataset):
    """Adds ``target`` (float multi-hot, (B, C)) to the samples of a sentence dataset.

    fairseq's SortDataset/NestedDictionaryDataset keep the index i the same all the way down,
    so row i of ``rows`` belongs to item i.
    """

    def __init__(self, dataset, rows):
        super().__init__(dataset)
        self.rows = torch.tensor(rows, dtype=torch.float)

    def __getitem__(self, index):
        return self.dataset[index], index

    def collater(self, samples):
        batch = self.dataset.collater([item for item, _ in samples])
        if batch:
            batch["target"] = self.rows[[index for _, index in samples]]
        return batch


@dataclass
class MultiLabelSentencePredictionConfig(SentencePredictionConfig):
    pass  # same fields; --num-classes may be left at -1 (taken from label/labels.txt)


@register_task(TASK_NAME, dataclass=MultiLabelSentencePredictionConfig)
class MultiLabelSentencePredictionTask(SentencePredictionTask):
    multilabel = True  # what sentence_prediction_with_rdrop reads to pick its multi-label head

    def __init__(self, cfg, data_dictionary, label_dictionary, label_names):
        super().__init__(cfg, data_dictionary, label_dictionary)
        self.label_names = label_names

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        if cfg.regression_target:
            raise ValueError(f"--task {TASK_NAME} has class labels; drop --regression-target")
        data_dict = cls.load_dictionary(os.path.join(cfg.data, "input0", "dict.txt"))
        names = read_label_names(os.path.join(cfg.data, "label", LABELS_FILE))
        if cfg.num_classes in (-1, None):
            with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.ExitStack():
                cfg.num_classes = len(names)
        elif cfg.num_classes != len(names):
            raise ValueError(
                f"--num-classes {cfg.num_classes} but {os.path.join(cfg.data, 'label', LABELS_FILE)} "
                f"names {len(names)} labels; pass --num-classes {len(names)} or leave it out"
            )
        label_dict = Dictionary()  # for anything that prints label names
        for name in names:
            label_dict.add_symbol(name)
        logger.info("[input] dictionary: %d types; %d labels", len(data_dict), len(names))
        return cls(cfg, data_dict, label_dict, names)

    def load_dataset(self, split, combine=False, **kwargs):
        # The parent finds no binarized label/ dataset and builds inputs without targets.
        dataset = super().load_dataset(split, combine=combine, **kwargs)
        path = os.path.join(self.cfg.data, "label", f"{split}.labels")
        if os.path.exists(path):
            dataset = MultiHotTargetDataset(dataset, read_multi_hot(path, self.label_names, len(dataset)))
        else:
            logger.warning("%s not found: split %s has no targets", path, split)
        self.datasets[split] = dataset
        return dataset
