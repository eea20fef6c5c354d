"""End-to-end fairseq-train / generate / eval-lm / hydra runs on CPU with the plugin.

Each run is a few updates of a tiny model on real data slices (Multi30k, WikiText-2);
together they take about two minutes on two cores.
"""
import importlib.util
import re
import subprocess
import sys
import textwrap

import pytest

from helpers import COMMON, REPO, USER_DIR, last_train_stats, run_cli
from recipes.common.fairseq_flags import KEEP_LAST_BATCH

TINY_TRANSFORMER = (
    "--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
    "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 "
    "--decoder-attention-heads 2"
).split()
# fairseq-fixed (and fairseq >= 0.12.3) ship a built-in criterion of our name, which loading the
# plugin replaces with a log line; fairseq 0.12.2 has none, so the name is simply free there.
HAS_BUILTIN = importlib.util.find_spec("fairseq.criterions.label_smoothed_cross_entropy_with_rdrop") is not None
REPLACING = "label_smoothed_cross_entropy_with_rdrop (replacing fairseq's built-in)"
def test_translation_builtin_command_line_then_generate_and_resume(translation_bin, tmp_path):
    save = tmp_path / "ckpt"
    # exactly the flags fairseq's built-in criterion accepts, plus --user-dir
    args = [translation_bin, "--user-dir", USER_DIR, "--arch", "transformer", *TINY_TRANSFORMER,
            "--share-all-embeddings", "--dropout", "0.3",
            "--criterion", "label_smoothed_cross_entropy_with_rdrop", "--label-smoothing", "0.1",
            "--rdrop-alpha", "5", "--report-accuracy", "--max-tokens", "1500",
            # best checkpoint by validation BLEU, as the paper's recipes: its saved
            # metrics hold numpy arrays, which weights_only loading must accept
            "--eval-bleu", "--eval-bleu-args", '{"beam": 1, "max_len_b": 10}',
            "--eval-bleu-detok", "space", "--best-checkpoint-metric", "bleu",
            "--maximize-best-checkpoint-metric", "--save-dir", save, *COMMON]
    log = run_cli("fairseq-train", *args, "--max-update", "4")
    assert (REPLACING in log) == HAS_BUILTIN
    stats = last_train_stats(log)
    assert float(stats["rdrop_kl_loss"]) > 0 and float(stats["ppl"]) < 2 ** float(stats["nll_loss"]) * 1.01

    out = run_cli("fairseq-generate", translation_bin, "--user-dir", USER_DIR,
                  "--path", save / "checkpoint_best.pt", "--beam", "2", "--max-len-b", "10",
                  "--gen-subset", "valid", "--max-tokens", "2000", "--cpu",
                  *KEEP_LAST_BATCH)
    assert len(re.findall(r"^H-\d+", out, flags=re.M)) == 60
    assert "BLEU4" in out

    # resume from checkpoint_last.pt: continues at update 4 and stops at 7
    log2 = run_cli("fairseq-train", *args, "--max-update", "7")
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 4 updates\)", log2), log2[-2000:]
    assert last_train_stats(log2)["num_updates"] == "7"


def test_generate_without_plugin_fails_under_weights_only(translation_bin, tmp_path):
    """Documents why the plugin allow-lists argparse.Namespace (and that the test above is not vacuous)."""
    save = tmp_path / "ckpt"
    run_cli("fairseq-train", translation_bin, "--arch", "transformer", *TINY_TRANSFORMER,
            "--criterion", "label_smoothed_cross_entropy", "--max-tokens", "1500",
            "--max-update", "1", "--save-dir", save, "--no-save-optimizer-state", *COMMON)
    out = run_cli("fairseq-generate", translation_bin, "--path", save / "checkpoint_last.pt",
                  "--max-tokens", "2000", "--cpu", check=False)
    assert "argparse.Namespace" in out and "Translated" not in out


def test_bart_base_shrunk_on_translation_task(translation_bin, tmp_path):
    log = run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, "--arch", "bart_base",
                  *TINY_TRANSFORMER, "--task", "translation", "--dropout", "0.2",
                  "--criterion", "label_smoothed_cross_entropy_with_rdrop", "--label-smoothing", "0.1",
                  "--rdrop-alpha", "0.7", "--rdrop-passes", "3", "--max-tokens", "1500",
                  "--max-update", "3", "--save-dir", tmp_path / "ckpt", "--no-save", *COMMON)
    assert float(last_train_stats(log)["rdrop_kl_loss"]) > 0


@pytest.mark.parametrize("adaptive", [False, True], ids=["softmax", "adaptive_softmax"])
def test_language_model_train_then_eval_lm(lm_bin, tmp_path, adaptive):
    save = tmp_path / "ckpt"
    extra = ["--adaptive-softmax-cutoff", "200,1000"] if adaptive else []
    args = [lm_bin, "--user-dir", USER_DIR, "--task", "language_modeling",
            "--arch", "transformer_lm", "--decoder-layers", "1", "--decoder-embed-dim", "32",
            "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2", "--dropout", "0.2",
            *extra, "--tokens-per-sample", "32", "--max-tokens", "512",
            "--criterion", "label_smoothed_cross_entropy_with_rdrop", "--label-smoothing", "0",
            "--rdrop-alpha", "1", "--rdrop-every", "2", "--save-dir", save, *COMMON]
    log = run_cli("fairseq-train", *args, "--max-update", "4")
    assert float(last_train_stats(log)["rdrop_kl_loss"]) > 0
    # k-step schedule read from the trainer: the step with update_num u is logged as
    # num_updates=u+1, and R-Drop runs when u % 2 == 0 (fairseq prints None for a meter
    # with no value in this interval). After resuming at 4 the pattern must continue.
    resumed = run_cli("fairseq-train", *args, "--max-update", "7") if not adaptive else ""
    steps = [l for l in (log + resumed).splitlines() if "train_inner" in l]
    assert len(steps) == (4 if adaptive else 7)
    for line in steps:
        n = int(re.search(r"num_updates=(\d+)", line).group(1))
        assert bool(re.search(r"rdrop_kl_loss=[\d.]+", line)) == ((n - 1) % 2 == 0), line
    out = run_cli("fairseq-eval-lm", lm_bin, "--user-dir", USER_DIR, "--path", save / "checkpoint_last.pt",
                  "--tokens-per-sample", "32", "--context-window", "16", "--max-tokens", "512", "--cpu")
    ppl = float(re.search(r"Perplexity: ([\d.]+)", out).group(1))
    assert 1 < ppl < 1e6


def test_hydra_yaml_written_for_the_builtin(translation_bin, tmp_path):
    (tmp_path / "rdrop.yaml").write_text(textwrap.dedent(f"""\
        common: {{cpu: true, seed: 1, log_format: simple, log_interval: 1, user_dir: {USER_DIR}}}
        task: {{_name: translation, data: {translation_bin}}}
        model: {{_name: transformer, encoder_layers: 1, decoder_layers: 1, encoder_embed_dim: 32,
                 decoder_embed_dim: 32, encoder_ffn_embed_dim: 64, decoder_ffn_embed_dim: 64,
                 encoder_attention_heads: 2, decoder_attention_heads: 2, dropout: 0.3}}
        criterion: {{_name: label_smoothed_cross_entropy_with_rdrop, label_smoothing: 0.1, rdrop_alpha: 5}}
        optimizer: {{_name: adam}}
        lr_scheduler: {{_name: fixed}}
        optimization: {{lr: [0.001], max_update: 2}}
        dataset: {{max_tokens: 1500}}
        checkpoint: {{save_dir: {tmp_path / 'ckpt'}, no_save: true}}
        """))
    log = run_cli("fairseq-hydra-train", "--config-dir", tmp_path, "--config-name", "rdrop", cwd=tmp_path)
    assert "RDropLabelSmoothedCrossEntropyCriterion" in log
    assert float(last_train_stats(log)["rdrop_kl_loss"]) > 0


def test_bad_option_fails_at_startup_naming_it(translation_bin, tmp_path):
    save = tmp_path / "ckpt"
    out = run_cli("fairseq-train", translation_bin, "--user-dir", USER_DIR, "--arch", "transformer",
                  *TINY_TRANSFORMER, "--criterion", "label_smoothed_cross_entropy_with_rdrop",
                  "--rdrop-alpha", "5", "--rdrop-passes", "1", "--max-tokens", "1500", "--save-dir", save,
                  *COMMON, check=False)
    assert "--rdrop-passes" in out and "num_updates" not in out
    assert not any(save.glob("*.pt"))


def test_loading_logs_the_replacement_once():
    code = ("import logging; logging.basicConfig(level=logging.INFO); import fairseq.criterions; "
            "import rdrop_fairseq; from fairseq.criterions import CRITERION_REGISTRY as R, "
            "CRITERION_DATACLASS_REGISTRY as D; from hydra.core.config_store import ConfigStore; "
            "n = 'label_smoothed_cross_entropy_with_rdrop'; "
            "node = ConfigStore.instance().load('criterion/' + n + '.yaml').node; "
            "print(R[n].__module__, D[n].__name__, 'rdrop_passes' in node)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop",
                                  "RDropLabelSmoothedCrossEntropyConfig", "True"]
    assert out.stderr.count(REPLACING) == (1 if HAS_BUILTIN else 0)
