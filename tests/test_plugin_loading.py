"""Loading the plugin: the math without fairseq, registration whichever is imported first, the
one INFO line per patch, the environment switches, and plugin checkpoints without --user-dir.

Every check runs in a fresh interpreter: what is under test is what importing does to a process.
"""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from helpers import COMMON, REPO, USER_DIR, run_cli
from rdrop_fairseq.switches import SWITCHES  # no fairseq import

NAME = "label_smoothed_cross_entropy_with_rdrop"
ALTERNATIVE = "rdrop_fairseq_" + NAME

# What the plugin changed in this process, as the last line of output: the module of the
# criterion under NAME and under ALTERNATIVE, of adaptive_loss_with_rdrop, whether torch's
# weights_only allow-list has argparse.Namespace, whether the n-gram repair is in place.
STATE = textwrap.dedent(f"""
    import argparse, torch
    from fairseq.criterions import CRITERION_REGISTRY as R
    from fairseq.ngram_repeat_block import NGramRepeatBlock
    from rdrop_fairseq.ngram_block import no_repeat_ngram
    print(R[{NAME!r}].__module__, getattr(R.get({ALTERNATIVE!r}), "__module__", None),
          R["adaptive_loss_with_rdrop"].__module__,
          argparse.Namespace in torch.serialization.get_safe_globals(),
          NGramRepeatBlock._no_repeat_ngram is no_repeat_ngram)
""")
LOADED = ["rdrop_fairseq.criterion", "None", "rdrop_fairseq.adaptive", "True", "True"]
# fairseq-fixed ships a built-in of NAME (replacing it logs a line); fairseq 0.12.2 has none
HAS_BUILTIN = importlib.util.find_spec("fairseq.criterions.label_smoothed_cross_entropy_with_rdrop") is not None
INFO_LINES = (("now uses rdrop_fairseq.criterion",) if HAS_BUILTIN else ()) + (
    "now accepts the globals", "NGramRepeatBlock._no_repeat_ngram", "Trainer._build_optimizer now tells")


def python(code, check=True, **env):
    """Run ``code`` in a fresh interpreter from the repo root, INFO logging on; (returncode, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    full_env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env)
    code = "import logging; logging.basicConfig(level=logging.INFO)\n" + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc.returncode, proc.stdout, proc.stderr


def last_line(out):
    return out.strip().splitlines()[-1].split()


def test_math_imports_and_computes_with_fairseq_unimportable():
    _, out, _ = python("""
        import importlib.abc, sys

        class NoFairseq(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "fairseq":
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

        sys.meta_path.insert(0, NoFairseq())
        import torch
        from rdrop_fairseq.fused import fused_rdrop_loss
        from rdrop_fairseq.loss import rdrop_loss_reference
        import rdrop_fairseq.adaptive_math  # noqa: F401

        g = torch.Generator().manual_seed(0)
        logits = torch.randn(2 * 6, 11, generator=g, dtype=torch.float64)
        target = torch.randint(2, 11, (6,), generator=g)
        target[-1] = 1  # padding
        fused = fused_rdrop_loss(logits, target, num_passes=2, alpha=3.0, epsilon=0.1, ignore_index=1)
        ref = rdrop_loss_reference(logits.log_softmax(-1), target, num_passes=2, alpha=3.0, epsilon=0.1,
                                   ignore_index=1)
        blocked = False
        try:
            import fairseq  # noqa: F401
        except ModuleNotFoundError:
            blocked = True
        print(blocked, "fairseq" in sys.modules, all(torch.allclose(a, b) for a, b in zip(fused, ref)),
              float(ref[2]) > 0)
    """)
    assert last_line(out) == ["True", "False", "True", "True"]


def test_math_import_does_not_import_fairseq_and_fairseq_import_then_loads_the_plugin():
    _, out, err = python(textwrap.dedent("""
        import sys
        import rdrop_fairseq.loss, rdrop_fairseq.fused, rdrop_fairseq.adaptive_math  # noqa: E401
        print(sorted(m for m in sys.modules if m.split(".")[0] == "fairseq"))
        import fairseq  # noqa: F401  (the plugin registers now)
    """) + STATE)
    assert out.splitlines()[0] == "[]"
    assert last_line(out) == LOADED
    assert all(err.count(line) == 1 for line in INFO_LINES), err[-3000:]


@pytest.mark.parametrize("first", ["import rdrop_fairseq; import fairseq",
                                   "import fairseq; import rdrop_fairseq",
                                   # criterion.py imports fairseq from its first lines: the plugin
                                   # must wait for it to finish before importing adaptive.py
                                   "import rdrop_fairseq.criterion",
                                   "import rdrop_fairseq.adaptive"])
def test_every_import_order_loads_the_plugin_once(first):
    _, out, err = python(first + "\nimport rdrop_fairseq; rdrop_fairseq.register()\n" + STATE)
    assert last_line(out) == LOADED
    assert all(err.count(line) == 1 for line in INFO_LINES), err[-3000:]


@pytest.mark.skipif(not HAS_BUILTIN, reason="this fairseq has no built-in label_smoothed_cross_entropy_with_rdrop")
def test_no_replace_builtin_keeps_fairseqs_and_registers_ours_under_another_name():
    _, out, err = python("import rdrop_fairseq, fairseq\n" + STATE, RDROP_FAIRSEQ_NO_REPLACE_BUILTIN="1")
    builtin, ours, *rest = last_line(out)
    assert builtin.startswith("fairseq.criterions.")  # fairseq-fixed 0.12.3.1 has a built-in
    assert [ours, *rest] == ["rdrop_fairseq.criterion", *LOADED[2:]]
    assert err.count(f"stays {builtin}") == 1 and "replacing" not in err


@pytest.mark.parametrize("switch, position", [("RDROP_FAIRSEQ_NO_CHECKPOINT_ALLOWLIST", 3),
                                              ("RDROP_FAIRSEQ_NO_NGRAM_FIX", 4)])
def test_each_patch_can_be_switched_off(switch, position):
    _, out, err = python("import fairseq, rdrop_fairseq\n" + STATE, **{switch: "1"})
    expected = list(LOADED)
    expected[position] = "False"
    assert last_line(out) == expected
    assert err.count(f"{switch} set") == 1


def test_a_bad_switch_value_fails_naming_the_variable():
    code, _, err = python("import fairseq, rdrop_fairseq", check=False, RDROP_FAIRSEQ_NO_NGRAM_FIX="maybe")
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
