"""Loading the plugin: importing it registers everything and logs ONE INFO line (the details at
DEBUG), the environment switches, and plugin checkpoints without --user-dir.

Every check of importing runs in a fresh interpreter: what is under test is what importing does to
a process. (That the formulas import without fairseq is tests/rdrop_torch/test_import_without_fairseq.py.)
"""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

from helpers import COMMON, REPO, USER_DIR, run_cli
from rdrop_fairseq.switches import SWITCHES

NAME = "label_smoothed_cross_entropy_with_rdrop"
ALTERNATIVE = "rdrop_fairseq_" + NAME
OURS = "rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop"

# What the plugin changed in this process, as the last line of output: the module of the
# criterion under NAME and under ALTERNATIVE, of adaptive_loss_with_rdrop, of the task and the
# optimizer, whether torch's weights_only allow-list has argparse.Namespace, whether the n-gram
# repair, the Trainer's parameter names and the --patience count are in place.
STATE = textwrap.dedent(f"""
    import argparse, torch
    from fairseq.criterions import CRITERION_REGISTRY as R
    from fairseq.ngram_repeat_block import NGramRepeatBlock
    from fairseq.optim import OPTIMIZER_REGISTRY
    from fairseq.tasks import TASK_REGISTRY
    from fairseq.trainer import Trainer
    from rdrop_fairseq.fixes.ngram_block import no_repeat_ngram
    print(R[{NAME!r}].__module__, getattr(R.get({ALTERNATIVE!r}), "__module__", None),
          R["adaptive_loss_with_rdrop"].__module__, TASK_REGISTRY["sentence_prediction_multilabel"].__module__,
          OPTIMIZER_REGISTRY["childtuning_adam"].__module__,
          argparse.Namespace in torch.serialization.get_safe_globals(),
          NGramRepeatBlock._no_repeat_ngram is no_repeat_ngram,
          hasattr(Trainer._build_optimizer, "__wrapped__"), hasattr(Trainer.save_checkpoint, "__wrapped__"))
""")
LOADED = [OURS, "None", "rdrop_fairseq.criterions.adaptive_loss_with_rdrop",
          "rdrop_fairseq.tasks.sentence_prediction_multilabel", "rdrop_fairseq.optim.childtuning_adam",
          "True", "True", "True", "True"]
# fairseq-fixed ships a built-in of NAME (replacing it is said on the INFO line); fairseq 0.12.2 has
# none, but has the encoder fast path the plugin repairs
HAS_BUILTIN = importlib.util.find_spec("fairseq.criterions.label_smoothed_cross_entropy_with_rdrop") is not None
HAS_FASTPATH = "_load_from_state_dict" in vars(TransformerEncoderLayerBase)


def python(code, check=True, level="INFO", **env):
    """Run ``code`` in a fresh interpreter from the repo root, logging at ``level``; (returncode, stdout,
    the log records of rdrop_fairseq's loggers as (level, message) pairs)."""
    full_env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    full_env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env)
    code = (f"import logging; logging.basicConfig(level=logging.{level}, format='%(name)s|%(levelname)s|%(message)s')\n"
            + textwrap.dedent(code))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    records = [tuple(line.split("|", 2)[1:]) for line in proc.stderr.splitlines()
               if line.startswith("rdrop_fairseq") and line.count("|") >= 2]
    return proc.returncode, proc.stdout, records, proc.stderr


def last_line(out):
    return out.strip().splitlines()[-1].split()


def info_lines(records):
    return [message for level, message in records if level == "INFO"]


@pytest.mark.parametrize("first", ["import rdrop_fairseq", "import fairseq; import rdrop_fairseq",
                                   # a submodule first: the package registers before it returns
                                   f"import {OURS}", "import rdrop_fairseq.commands.torchrun_train"])
def test_importing_registers_everything_and_logs_one_info_line(first):
    _, out, records, _ = python(first + "\nimport rdrop_fairseq; rdrop_fairseq.register()\n" + STATE)
    assert last_line(out) == LOADED
    [line] = info_lines(records)
    assert line.startswith("rdrop_fairseq: registered criteria " + NAME)
    for part in ("adaptive_loss_with_rdrop", "sentence_prediction_with_rdrop", "task sentence_prediction_multilabel",
                 "optimizer childtuning_adam", "weights_only allow-list", "--no-repeat-ngram-size",
                 "Trainer names the optimizer's parameters", "--patience", "docs/criterion.md"):
        assert part in line, part
    assert ("replacing fairseq's built-in" in line) == HAS_BUILTIN
    assert ("encoder fast path" in line) == HAS_FASTPATH
    assert "switched off" not in line


def test_each_change_is_detailed_at_debug_level():
    _, _, records, _ = python("import rdrop_fairseq", level="DEBUG")
    debug = "\n".join(message for level, message in records if level == "DEBUG")
    details = ["now accepts the globals", "NGramRepeatBlock._no_repeat_ngram", "Trainer._build_optimizer now tells",
               "saves --patience's count"]
    details += [f"criterion '{NAME}' now uses {OURS}"] if HAS_BUILTIN else []
    details += ["_load_from_state_dict no longer arms", "DDP ignore"] if HAS_FASTPATH else []
    assert all(detail in debug for detail in details), debug
    assert len(info_lines(records)) == 1


@pytest.mark.skipif(not HAS_BUILTIN, reason="this fairseq has no built-in label_smoothed_cross_entropy_with_rdrop")
def test_no_replace_builtin_keeps_fairseqs_and_registers_ours_under_another_name():
    _, out, records, _ = python("import rdrop_fairseq, fairseq\n" + STATE, RDROP_FAIRSEQ_NO_REPLACE_BUILTIN="1")
    builtin, ours, *rest = last_line(out)
    assert builtin.startswith("fairseq.criterions.")  # fairseq-fixed 0.12.3.1 has a built-in
    assert [ours, *rest] == [OURS, *LOADED[2:]]
    [line] = info_lines(records)
    assert f"{ALTERNATIVE} (fairseq's built-in keeps {NAME})" in line
    assert "switched off: RDROP_FAIRSEQ_NO_REPLACE_BUILTIN" in line and "replacing" not in line


@pytest.mark.parametrize("switch, position", [("RDROP_FAIRSEQ_NO_CHECKPOINT_ALLOWLIST", 5),
                                              ("RDROP_FAIRSEQ_NO_NGRAM_FIX", 6),
                                              ("RDROP_FAIRSEQ_NO_TRAINER_PATCH", 7),
                                              ("RDROP_FAIRSEQ_NO_PATIENCE_FIX", 8)])
def test_each_change_can_be_switched_off(switch, position):
    _, out, records, _ = python("import fairseq, rdrop_fairseq\n" + STATE, **{switch: "1"})
    expected = list(LOADED)
    expected[position] = "False"
    assert last_line(out) == expected
    [line] = info_lines(records)
    assert f"switched off: {switch}" in line


def test_a_bad_switch_value_fails_naming_the_variable():
    code, _, _, err = python("import fairseq, rdrop_fairseq", check=False, RDROP_FAIRSEQ_NO_NGRAM_FIX="maybe")
    assert code != 0 and "RDROP_FAIRSEQ_NO_NGRAM_FIX='maybe'" in err


TINY = ("--arch transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 "
        "--decoder-embed-dim 16 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 "
        "--encoder-attention-heads 2 --decoder-attention-heads 2 --max-tokens 1500").split()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BUILTIN, reason="this fairseq has no built-in label_smoothed_cross_entropy_with_rdrop")
def test_our_criterion_trains_under_its_other_name_with_the_builtin_kept(translation_bin, tmp_path):
    log = run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, *TINY,
                  "--criterion", ALTERNATIVE, "--label-smoothing", "0.1", "--rdrop-alpha", "5",
                  "--rdrop-passes", "3", "--max-update", "1", "--no-save", *COMMON,
                  env={"RDROP_FAIRSEQ_NO_REPLACE_BUILTIN": "1"})
    assert "RDropLabelSmoothedCrossEntropyCriterion" in log and "rdrop_kl_loss" in log


@pytest.mark.slow
def test_plugin_checkpoint_needs_the_user_dir_to_validate(translation_bin, tmp_path):
    """What a user sees with fairseq-validate and no --user-dir (documented in docs/criterion.md):
    fairseq runs none of the plugin's code then, so the plugin cannot add a hint of its own."""
    save = tmp_path / "ckpt"
    run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, *TINY, "--criterion", NAME,
            "--label-smoothing", "0.1", "--rdrop-alpha", "5", "--rdrop-passes", "3", "--max-update", "1",
            "--save-dir", save, "--no-save-optimizer-state", "--no-epoch-checkpoints", *COMMON)
    validate = ["fairseq-validate", translation_bin, "--task", "translation", "--path",
                save / "checkpoint_last.pt", "--cpu", "--max-tokens", "2000"]
    # torch >= 2.6 refuses every fairseq 0.12 checkpoint without the plugin's allow-list
    out = run_cli(*validate, check=False)
    assert "Unsupported global: GLOBAL argparse.Namespace" in out and "valid on" not in out
    # with weights_only forced off: fairseq-fixed's built-in config lacks our options; fairseq 0.12.2
    # has no criterion of that name at all
    out = run_cli(*validate, check=False, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    if HAS_BUILTIN:
        assert "Key 'rdrop_passes' not in 'RdropLabelSmoothedCrossEntropyCriterionConfig'" in out
    else:
        assert "KeyError: 'label_smoothed_cross_entropy_with_rdrop'" in out
    assert "valid on" not in out
    out = run_cli(*validate, "--user-dir", USER_DIR)
    assert "valid on 'valid' subset" in out
