"""recipes/language_modeling/wikitext2 end to end on a slice of the real corpus (SETTING=tiny):
prepare -> fairseq-preprocess -> baseline and R-Drop training -> fairseq-eval-lm -> plot."""
import math
import os
import re
import subprocess
import sys

from helpers import BIN, REPO

RECIPE = REPO / "recipes" / "language_modeling" / "wikitext2"
VOCAB_WITHOUT_UNK = 33276  # WikiText-2's 33,278 types minus <unk> and the line-end <eos>


def run_recipe(shared_data, work, png):
    env = dict(os.environ, RDROP_DATA_DIR=str(shared_data), SETTING="tiny", WORK=str(work),
               PLOT=str(png), PYTHON=sys.executable, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(RECIPE / "run.sh")], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def test_tiny_run_trains_both_and_reports_finite_test_perplexity(shared_data, tmp_path):
    work, png = tmp_path / "work", tmp_path / "curves.png"
    out = run_recipe(shared_data, work, png)

    # The dictionary is counted on the whole training split, without the corpus's own <unk>.
    words = [line.split()[0] for line in (work / "text" / "dict.txt").read_text().splitlines()]
    assert len(words) == VOCAB_WITHOUT_UNK and "<unk>" not in words

    test_tokens = sum(len(line.split()) + 1 for line in (work / "text" / "test.tokens").open())
    for name in ("baseline", "rdrop"):
        eval_log = (work / name / "eval_test.log").read_text()
        evaluated = re.search(r"Evaluated ([\d,]+) tokens", eval_log).group(1)
        assert int(evaluated.replace(",", "")) == test_tokens  # every test token scored, + <eos>
        loss, ppl = map(float, re.search(r"Loss \(base 2\): ([\d.]+), Perplexity: ([\d.]+)",
                                         eval_log).groups())
        assert math.isfinite(ppl) and math.isclose(ppl, 2 ** loss, rel_tol=1e-3)
        # a few updates already beat the uniform distribution over the vocabulary
        assert ppl < VOCAB_WITHOUT_UNK, (name, ppl)
        assert f"[test] {name}: Loss (base 2)" in out

    rdrop_log = (work / "rdrop" / "train.log").read_text()
    base_log = (work / "baseline" / "train.log").read_text()
    kl = [float(v) for v in re.findall(r'"train_rdrop_kl_loss": "([\d.e-]+)"', rdrop_log)]
    assert kl and all(v > 0 for v in kl)           # the plugin's KL term was on ...
    assert "rdrop_kl_loss" not in base_log          # ... and only in the R-Drop run
    assert "'rdrop_passes': 2" in rdrop_log         # the plugin's criterion, not fairseq's built-in
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prepare_rejects_negative_limits(shared_data, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RECIPE / "prepare.py"), "--out", str(tmp_path), "--train-lines", "-1"],
        env=dict(os.environ, RDROP_DATA_DIR=str(shared_data)), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.returncode == 2 and "--train-lines must be >= 0" in proc.stdout
