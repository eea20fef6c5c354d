"""recipes/translation/{iwslt14,wmt14}/train.sh and generate.sh, the shared ../train.sh and
../generate.sh with each dataset's settings.sh: the command lines they hand fairseq, in a dry run
(FAIRSEQ_TRAIN/FAIRSEQ_GENERATE=echo, a stand-in python that fakes the GPU probes and logs the
averaging and scoring calls). Each dataset's paper settings (its README) must reach the command, and
the environment overrides the READMEs document must win."""
import os
import shlex
import subprocess

import pytest

from helpers import REPO

STUB = """#!/usr/bin/env bash
if [ "$1" = -c ]; then
  case "$2" in
    *device_count*) echo $(( ${FAKE_GPUS:-0} > 0 ? ${FAKE_GPUS:-0} : 1 )) ;;
    *is_available*) [ "${FAKE_GPUS:-0}" -gt 0 ] ;;
    *) exit 9 ;;
  esac
else
  echo "PYTHON $*"
fi
"""


@pytest.fixture
def dry(tmp_path):
    """dry(script, mode, **env) -> (exit code, output, the fairseq command as a list or None)."""
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    for name, src in (("iwslt14", "de"), ("wmt14", "en")):
        (tmp_path / name / "bin").mkdir(parents=True)
        (tmp_path / name / "bin" / f"dict.{src}.txt").touch()
        (tmp_path / name / "save").mkdir()
        (tmp_path / name / "save" / "checkpoint_best.pt").touch()

    def run(script, mode="rdrop", **env):
        dataset = script.split("/")[0]
        # only PATH and the like from the caller: its settings must not leak into the defaults
        full_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        full_env.update(PYTHON=str(stub), FAIRSEQ_TRAIN="echo", FAIRSEQ_GENERATE="echo",
                        DATA_BIN=str(tmp_path / dataset / "bin"), SAVE_DIR=str(tmp_path / dataset / "save"))
        full_env.update(env)
        proc = subprocess.run(["bash", str(REPO / "recipes" / "translation" / script), mode], env=full_env,
                              capture_output=True, text=True, timeout=60)
        save = tmp_path / dataset / "save"
        logs = sorted(save.glob("train.log")) + sorted(save.glob("generate-*.txt"))
        cmd = shlex.split(logs[0].read_text()) if logs else None
        for log in logs:
            log.unlink()
        return proc.returncode, proc.stdout + proc.stderr, cmd

    return run


def option(cmd, name):
    return cmd[cmd.index(name) + 1]


@pytest.mark.parametrize("dataset, src, tgt, arch, lr, warmup, dropout, wd, seed, update_freq", [
    ("iwslt14", "de", "en", "transformer_iwslt_de_en", "5e-4", "4000", "0.3", "0.0001", "64", None),
    ("wmt14", "en", "de", "transformer_vaswani_wmt_en_de_big", "1e-3", "6000", "0.1", "0.0", "1", "16"),
])
def test_train_hands_fairseq_the_papers_settings(dry, dataset, src, tgt, arch, lr, warmup, dropout, wd, seed,
                                                 update_freq):
    code, out, cmd = dry(f"{dataset}/train.sh")
    assert code == 0, out
    assert (option(cmd, "-s"), option(cmd, "-t"), option(cmd, "--arch")) == (src, tgt, arch)
    assert (option(cmd, "--lr"), option(cmd, "--warmup-updates"), option(cmd, "--dropout"),
            option(cmd, "--weight-decay"), option(cmd, "--seed")) == (lr, warmup, dropout, wd, seed)
    assert option(cmd, "--criterion") == "label_smoothed_cross_entropy_with_rdrop"
    assert (option(cmd, "--rdrop-alpha"), option(cmd, "--label-smoothing"), option(cmd, "--max-tokens")) \
        == ("5", "0.1", "4096")
    assert option(cmd, "--required-batch-size-multiple") == "1"
    assert (option(cmd, "--update-freq") if "--update-freq" in cmd else None) == update_freq
    assert cmd[-1] == "--cpu"  # no GPU: fp32 on the CPU

    code, out, cmd = dry(f"{dataset}/train.sh", "baseline")
    assert code == 0 and option(cmd, "--criterion") == "label_smoothed_cross_entropy", out
    assert "--rdrop-alpha" not in cmd


def test_wmt14_update_freq_follows_the_gpu_count(dry):
    for gpus, freq in (("1", "16"), ("4", "4"), ("8", "2"), ("32", "1")):
        code, out, cmd = dry("wmt14/train.sh", FAKE_GPUS=gpus)
        assert code == 0 and option(cmd, "--update-freq") == freq and cmd[-1] == "--fp16", (gpus, out)
    code, out, cmd = dry("wmt14/train.sh", N_GPUS="8", UPDATE_FREQ="3")
    assert option(cmd, "--update-freq") == "3"


def test_environment_overrides_win_and_extra_args_come_last(dry):
    code, out, cmd = dry("iwslt14/train.sh", MAX_UPDATE="20", ARCH="transformer", SEED="3",
                         EXTRA_ARGS="--encoder-layers 1 --decoder-layers 1")
    assert code == 0, out
    assert (option(cmd, "--max-update"), option(cmd, "--arch"), option(cmd, "--seed")) == ("20", "transformer", "3")
    assert cmd[-4:] == ["--encoder-layers", "1", "--decoder-layers", "1"]


@pytest.mark.parametrize("dataset, beam, lenpen, lang", [("iwslt14", "5", "1", "en"), ("wmt14", "4", "0.6", "de")])
def test_generate_decodes_with_the_papers_settings_and_scores(dry, dataset, beam, lenpen, lang):
    code, out, cmd = dry(f"{dataset}/generate.sh")
    assert code == 0, out
    assert (option(cmd, "--beam"), option(cmd, "--lenpen"), option(cmd, "--gen-subset")) == (beam, lenpen, "test")
    assert option(cmd, "--required-batch-size-multiple") == "1" and cmd[-1] == "--cpu"
    assert "bleu.py" in out and f"--lang {lang}" in out


def test_raw_references_only_for_wmt14_test(dry, tmp_path):
    ref = tmp_path / "test.raw.de"
    ref.touch()
    scoring = [line for line in dry("wmt14/generate.sh", RAW_REF=str(ref))[1].splitlines() if "PYTHON" in line]
    assert scoring and f"--raw-ref {ref}" in scoring[-1]
    scoring = [line for line in dry("wmt14/generate.sh", RAW_REF=str(ref), GEN_SUBSET="valid")[1].splitlines()
               if "PYTHON" in line]
    assert scoring and "--raw-ref" not in scoring[-1]
    scoring = [line for line in dry("iwslt14/generate.sh", RAW_REF=str(ref))[1].splitlines() if "PYTHON" in line]
    assert scoring and "--raw-ref" not in scoring[-1]  # IWSLT14 scores against its own references


def test_avg_last_averages_then_translates_the_average(dry):
    code, out, cmd = dry("iwslt14/generate.sh", AVG_LAST="5")
    # the stand-in python does not write the average: generate.sh stops, naming it
    assert code == 2 and "average_checkpoints.py" in out and "--num-epoch-checkpoints 5" in out
    assert "checkpoint_avg5.pt does not exist" in out


def test_bad_mode_and_missing_data_are_named(dry, tmp_path):
    code, out, _ = dry("iwslt14/train.sh", "rdorp")
    assert code == 2 and "{rdrop|baseline}" in out and "rdorp" in out
    code, out, _ = dry("wmt14/train.sh", DATA_BIN=str(tmp_path / "nowhere"))
    assert code == 2 and "has no dict.en.txt: run prepare.py first" in out
