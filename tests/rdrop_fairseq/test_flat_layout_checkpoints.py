"""Checkpoints users saved with the flat layout (data/flat_layout/: every module side by side in
rdrop_fairseq/) load, resume training, generate and validate under today's plugin, with the command
lines that made them (flat_layout_checkpoints.py): registered names, flags, optimizer state, the
ChildTuning mask file and the --patience count all carry over."""
import re
import shutil

import fairseq
import pytest
import torch

import flat_layout_checkpoints as saved
from helpers import USER_DIR, last_train_stats, run_cli

SAVED = saved.DATA / f"fairseq-{fairseq.__version__}"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SAVED.is_dir(), reason=f"no flat-layout checkpoints for fairseq {fairseq.__version__}"),
]


def stored(name):
    return torch.load(SAVED / name, map_location="cpu", weights_only=False)


def resume(tmp_path, name, *args):
    """fairseq-train from a copy of the saved checkpoint as checkpoint_last.pt: its log, and the
    number of updates the checkpoint holds."""
    save = tmp_path / name
    save.mkdir()
    shutil.copy(SAVED / f"{name}.pt", save / "checkpoint_last.pt")
    updates = stored(f"{name}.pt")["optimizer_history"][-1]["num_updates"]
    log = run_cli("fairseq-train", *args, "--save-dir", save)
    assert re.search(rf"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ {updates} updates\)", log), log[-3000:]
    return log, updates


def test_rdrop_checkpoint_resumes_with_its_patience_count_and_generates(tmp_path):
    patience = stored("rdrop.pt")["extra_state"]["rdrop_fairseq_should_stop_early"]
    log, updates = resume(tmp_path, "rdrop", saved.TRANSLATION_DATA, *saved.TRANSFORMER, *saved.TRANSFORMER_CRITERION,
                          *saved.common(USER_DIR), *saved.RDROP, "--max-epoch", saved.RDROP_EPOCHS + 1)
    assert (f"--patience resumes from {tmp_path / 'rdrop' / 'checkpoint_last.pt'}: best {patience['best']}, "
            f"{patience['num_runs']} validation(s) without improvement") in log
    stats = last_train_stats(log)
    assert int(stats["num_updates"]) == updates + updates // saved.RDROP_EPOCHS  # one epoch more
    assert float(stats["rdrop_kl_loss"]) > 0

    out = run_cli("fairseq-generate", saved.TRANSLATION_DATA, "--user-dir", USER_DIR, "--path", SAVED / "rdrop.pt",
                  "--beam", "2", "--max-len-b", "10", "--gen-subset", "valid", "--batch-size", "8",
                  "--required-batch-size-multiple", "1", "--cpu")
    assert len(re.findall(r"^H-\d+", out, flags=re.M)) == 16 and "BLEU4" in out


def test_childtuning_checkpoint_resumes_with_its_mask_file(tmp_path):
    assert "d_mask" in stored("childtuning.pt")["last_optimizer_state"]["childtuning"]
    mask = SAVED / "childtuning_mask.pt"
    log, updates = resume(tmp_path, "childtuning", saved.TRANSLATION_DATA, *saved.TRANSFORMER,
                          *saved.TRANSFORMER_CRITERION, *saved.common(USER_DIR), *saved.childtuning(mask),
                          "--max-update", saved.CHILDTUNING_UPDATES + 2)
    assert "ChildTuning-D: p=0.3, masking" in log
    # the mask file and the checkpoint's copy of the mask are read alike: no mismatch warning
    assert "differs from the mask" not in log and "no ChildTuning state" not in log
    assert int(last_train_stats(log)["num_updates"]) == updates + 2


def test_multilabel_checkpoint_resumes_and_validates(tmp_path):
    log, updates = resume(tmp_path, "multilabel", saved.MULTILABEL_DATA, *saved.MULTILABEL, *saved.common(USER_DIR),
                          "--max-update", saved.MULTILABEL_UPDATES + 2)
    assert int(last_train_stats(log)["num_updates"]) == updates + 2
    # the validation at the end of training, with the multi-label metrics of the plugin's criterion
    valid = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    assert valid and all(re.search(rf"\| {key} [\d.]+", valid[-1]) for key in ("micro_f1", "exact_match")), log[-3000:]
