"""sentence_prediction_multilabel: multi-hot targets from label files, and errors naming the file
and line for label files that do not fit."""
import pytest
from fairseq.data import Dictionary
from fairseq.tasks.sentence_prediction import SentencePredictionConfig as TaskConfig

from rdrop_fairseq.tasks.sentence_prediction_multilabel import LabelFileError, MultiLabelSentencePredictionTask

HEAD = "sentence_classification_head"


@pytest.fixture
def ml_data(tmp_path):
    """A folder laid out for sentence_prediction_multilabel, binarized in process the way
    fairseq-preprocess does (a subprocess per test would cost seconds)."""
    from fairseq.data import indexed_dataset

    (tmp_path / "input0").mkdir()
    d = Dictionary()
    for w in "a b c".split():
        d.add_symbol(w)
    d.save(str(tmp_path / "input0" / "dict.txt"))
    for split in ("train", "valid"):
        prefix = str(tmp_path / "input0" / split)
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(d))
        for line in ("a b c", "b c", "c a"):
            builder.add_item(d.encode_line(line, add_if_not_exist=False))
        builder.finalize(prefix + ".idx")
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "labels.txt").write_text("joy\nanger\nfear\n")
    (tmp_path / "label" / "train.labels").write_text("joy\nanger, fear\nfear joy\n")
    (tmp_path / "label" / "valid.labels").write_text("joy\njoy\nanger\n")
    return tmp_path


def setup_ml(path, **kw):
    cfg = TaskConfig(data=str(path), regression_target=False, classification_head_name=HEAD, seed=1, **kw)
    return MultiLabelSentencePredictionTask.setup_task(cfg)


def test_multilabel_task_builds_multi_hot_targets(ml_data):
    task = setup_ml(ml_data)
    assert task.cfg.num_classes == 3
    ds = task.load_dataset("train")
    batch = ds.collater([ds[i] for i in range(len(ds))])
    by_id = {int(i): row.tolist() for i, row in zip(batch["id"], batch["target"])}
    assert by_id == {0: [1, 0, 0], 1: [0, 1, 1], 2: [1, 0, 1]}
    assert batch["net_input"]["src_tokens"].size(0) == 3


@pytest.mark.parametrize("content,match", [
    ("joy\nsadness\nfear\n", r"train\.labels:2: label 'sadness' is not in the label dictionary"),
    ("joy\n\nfear\n", r"train\.labels:2: empty label set"),
    ("joy\nfear\n", r"train\.labels has 2 lines but the inputs of this split have 3"),
])
def test_bad_label_files_are_errors_naming_file_and_line(ml_data, content, match):
    (ml_data / "label" / "train.labels").write_text(content)
    with pytest.raises(LabelFileError, match=match):
        setup_ml(ml_data).load_dataset("train")


def test_label_dictionary_and_num_classes_are_checked(ml_data):
    with pytest.raises(ValueError, match="--num-classes 5 .* 3 labels"):
        setup_ml(ml_data, num_classes=5)
    (ml_data / "label" / "labels.txt").write_text("joy\nanger\njoy\n")
    with pytest.raises(LabelFileError, match=r"labels\.txt:3: label 'joy' repeats line 1"):
        setup_ml(ml_data)
