"""The classification recipes end to end with fairseq-train: SST-2 (classification), STS-B
(regression) and GoEmotions (multi-label) in the CPU recipe's tiny setting, and the GLUE recipe's
restore-from-pretrained path on a tiny RoBERTa that this test pre-trains (masked_lm) on WikiText-2."""
import math
from pathlib import Path

import pytest
import torch

from helpers import USER_DIR, run_cli, write_tiny_bert

DEV_FILES = {"cola": "glue/CoLA/dev.tsv", "sst2": "glue/SST-2/dev.tsv", "stsb": "glue/STS-B/sts-dev.csv",
             "goemotions": "goemotions/dev.tsv"}


def dev_slice(shared_data, dataset, dest, n=48):
    """The first ``n`` dev examples in the corpus's own format: the tiny settings' dev set."""
    lines = (shared_data / DEV_FILES[dataset]).read_text(encoding="utf-8").splitlines(keepends=True)
    header = 1 if dataset == "sst2" else 0
    dest.write_text("".join(lines[: n + header]), encoding="utf-8")
    return dest


def check_kept_checkpoints(recipe, dataset, work, shared_data, tmp_path, runs, predict_blind=True):
    """Each run kept the checkpoint of its best dev epoch: score.py on the dev set (prepared from the
    corpus's file again) gives that epoch's logged metric; and score.py --blind writes one
    well-formed prediction per line of the dataset's blind test file."""
    from recipes.classification import score
    spec = recipe.DATASETS[dataset]
    for run in runs:
        folder = work / "runs" / f"{run}-seed1"
        assert sorted(p.name for p in folder.glob("*.pt")) == ["checkpoint_best.pt"], run
        assert f"--best-checkpoint-metric {recipe.best_metric(dataset)} --maximize-best-checkpoint-metric" in \
            (folder / "train.log").read_text().splitlines()[0]
    scored = score.main(["--dataset", dataset, "--workdir", str(work), "--seeds", "1",
                         "--file", str(dev_slice(shared_data, dataset, tmp_path / f"dev-{dataset}.tsv"))])
    for run in runs:
        logged = max(s[spec["metric"]] for s in recipe.read_valid_stats(work / "runs" / f"{run}-seed1" / "train.log"))
        assert abs(scored[f"{run}-seed1"][recipe.best_metric(dataset)] - logged) <= 0.051, (run, scored, logged)
    blind = shared_data.parent / "blind"
    if not (predict_blind and blind.is_dir()):
        return scored
    predicted = score.main(["--dataset", dataset, "--workdir", str(work), "--seeds", "1", "--blind",
                            "--blind-dir", str(blind), "--out", str(tmp_path / "blind")])
    inputs = (blind / score.BLIND_FILES[dataset]).read_text(encoding="utf-8").splitlines()
    for run in runs:
        lines = Path(predicted[f"{run}-seed1"]).read_text().split("\n")[:-1]
        assert len(lines) == len(inputs) and Path(predicted[f"{run}-seed1"]).name.endswith(".pred")
        if dataset in ("cola", "sst2"):
            assert set(lines) <= {"0", "1"}
        elif dataset == "stsb":
            assert all(math.isfinite(float(x)) for x in lines)
        else:
            assert all(int(i) in range(28) for line in lines if line for i in line.split(","))
    return scored


@pytest.fixture(scope="module")
def cpu_recipe():
    from recipes.classification import run
    return run


@pytest.mark.parametrize("dataset", ["sst2", "stsb", "goemotions"])
def test_cpu_recipe_tiny(cpu_recipe, dataset, shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    work, plot = tmp_path / "w", tmp_path / "curves.png"
    # STS-B also checks --train-lines: the first N training pairs instead of the setting's 160
    size = ["--train-lines", "120"] if dataset == "stsb" else []
    rows = cpu_recipe.main(["--dataset", dataset, "--setting", "tiny", "--seeds", "1", "2",
                            "--workdir", str(work), "--plot", str(plot), *size])
    printed = capsys.readouterr().out
    spec = cpu_recipe.DATASETS[dataset]
    cfg = cpu_recipe.SETTINGS["tiny"][dataset]
    assert [r["run"] for r in rows] == list(cpu_recipe.runs_for(dataset))
    for r in rows:
        assert [s["seed"] for s in r["seeds"]] == [1, 2]
        mean, std = r[f"best_{spec['metric']}"]
        assert math.isfinite(mean) and std >= 0
        log = (work / "runs" / f"{r['run']}-seed1" / "train.log").read_text()
        stats = cpu_recipe.read_valid_stats(work / "runs" / f"{r['run']}-seed1" / "train.log")
        assert [s["epoch"] for s in stats] == list(range(1, cfg["max_epoch"] + 1))  # equal epochs
        assert all(m in stats[-1] for m in (spec["metric"], *spec["extra_metrics"]))
        # R-Drop ran with its consistency term; the baselines did not
        assert ("rdrop_kl_loss" in log) == r["run"].startswith("rdrop"), r["run"]
    # the seed changes the run: two seeds give different dev curves
    a, b = (cpu_recipe.read_valid_stats(work / "runs" / f"baseline-seed{s}" / "train.log") for s in (1, 2))
    assert [x["valid_loss"] for x in a] != [x["valid_loss"] for x in b]
    if dataset == "goemotions":
        labels = (work / "bin" / "label" / "labels.txt").read_text().split()
        assert len(labels) == 28 and labels[-1] == "neutral"
        assert "'rdrop_divergence': softmax" in (work / "runs" / "rdrop_softmax-seed1" / "train.log").read_text()
    if dataset == "stsb":
        assert (work / "bin" / "input1" / "train.bin").stat().st_size > 0
        scores = [float(x) for x in (work / "bin" / "label" / "train.label").read_text().split()]
        assert 0 <= min(scores) and max(scores) <= 1 and len(scores) == 120
    assert "± " in printed and "| baseline |" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scored = check_kept_checkpoints(cpu_recipe, dataset, work, shared_data, tmp_path,
                                    list(cpu_recipe.runs_for(dataset)))
    if dataset == "goemotions":
        # fairseq-validate on a kept multi-label checkpoint: fairseq's sentence_prediction tasks read
        # --classification-head-name from the criterion's options, so it needs a --criterion (any
        # sentence_prediction one; the checkpoint's own is used) and a batch size
        prepared = work / "scored" / "dev-goemotions" / "prepared"
        log = run_cli("fairseq-validate", prepared, "--user-dir", USER_DIR, "--path",
                      work / "runs" / "baseline-seed1" / "checkpoint_best.pt", "--task",
                      "sentence_prediction_multilabel", "--criterion", "sentence_prediction_with_rdrop",
                      "--batch-size", "32", "--valid-subset", "test", "--model-overrides", f"{{'data': '{prepared}'}}",
                      "--cpu")
        macro = float(log.split("| macro_f1 ")[1].split()[0])
        assert abs(macro - scored["baseline-seed1"]["macro_f1"]) < 0.006
    # a rerun trains nothing
    cpu_recipe.main(["--dataset", dataset, "--setting", "tiny", "--seeds", "1", "2", "--workdir", str(work),
                     "--plot", str(plot), *size])
    assert "fairseq-train" not in capsys.readouterr().out


TINY_ROBERTA = ["--arch", "roberta", "--encoder-layers", "1", "--encoder-embed-dim", "32",
                "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--max-positions", "64"]


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory, shared_data):
    """A RoBERTa-architecture checkpoint from a few masked_lm updates on a WikiText-2 slice:
    what the GLUE recipe restores instead of the public checkpoint (the tests download nothing)."""
    work = tmp_path_factory.mktemp("pretrain")
    lines = (shared_data / "wikitext-2" / "wiki.train.tokens").read_text(encoding="utf-8").splitlines()
    (work / "train.txt").write_text("\n".join(l for l in lines[:400] if l.strip()) + "\n", encoding="utf-8")
    (work / "valid.txt").write_text("\n".join(l for l in lines[400:480] if l.strip()) + "\n", encoding="utf-8")
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", work / "train.txt", "--validpref",
            work / "valid.txt", "--destdir", work / "bin", "--workers", "1")
    run_cli("fairseq-train", work / "bin", "--task", "masked_lm", *TINY_ROBERTA, "--criterion", "masked_lm",
            "--tokens-per-sample", "64", "--sample-break-mode", "none", "--optimizer", "adam",
            "--lr", "1e-3", "--batch-size", "8", "--max-update", "3", "--save-dir", work / "ckpt",
            "--no-epoch-checkpoints", "--cpu", "--num-workers", "0", "--seed", "1")
    return work / "ckpt" / "checkpoint_last.pt", work / "bin" / "dict.txt"


def test_glue_recipe_restores_a_pretrained_roberta_with_a_new_head(tiny_pretrained, shared_data, tmp_path,
                                                                     monkeypatch):
    from recipes.classification.glue import run as glue
    ckpt, dict_path = tiny_pretrained
    sst = shared_data / "glue" / "SST-2"
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    for name, n in (("train.tsv", 120), ("dev.tsv", 40)):  # GLUE's own SST-2 format (header + rows)
        lines = (sst / name).read_text(encoding="utf-8").splitlines()[: n + 1]
        (tmp_path / "glue" / "SST-2" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    work = tmp_path / "w"
    best, stats = glue.main(["--task", "SST-2", "--restore-file", str(ckpt), "--dict", str(dict_path),
                             "--bpe", "none", "--glue-dir", str(tmp_path / "glue"), "--cpu", "--workdir",
                             str(work), "--rdrop-alpha", "1", "--", *TINY_ROBERTA, "--max-update", "4",
                             "--batch-size", "8", "--num-workers", "0", "--lr", "1e-4"])
    log = (work / "alpha1" / "train.log").read_text()
    # the paper protocol's flags, and the classification head created fresh on the restored encoder
    for flag in ("--reset-optimizer", "--reset-dataloader", "--reset-meters", "--init-token 0",
                 "--weight-decay 0.1", "--max-epoch 10", "--criterion sentence_prediction_with_rdrop"):
        assert flag in log.splitlines()[0]
    assert f"Loaded checkpoint {ckpt}" in log
    assert "classification_heads.sentence_classification_head" in log and "rdrop_kl_loss" in log
    assert math.isfinite(best["valid_accuracy"])
    # The encoder starts from the checkpoint: after 4 small updates its embeddings are still
    # within ~1e-3 of the pre-trained ones (a fresh init differs by ~0.1 per entry).
    pre = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    tuned = torch.load(work / "alpha1" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    key = "encoder.sentence_encoder.embed_tokens.weight"
    assert (tuned[key] - pre[key]).abs().max().item() < 0.01
    assert "classification_heads.sentence_classification_head.out_proj.weight" not in pre
    assert tuned["classification_heads.sentence_classification_head.out_proj.weight"].shape == (2, 32)
    # the data went through the checkpoint's dictionary (+ <mask>, as masked_lm and sentence_prediction add)
    assert (work / "bin" / "input0" / "dict.txt").read_text() == dict_path.read_text()


def test_glue_recipe_settings_follow_fairseqs_readme():
    from recipes.classification.glue import run as glue
    rte = glue.train_command("RTE", "bin", "save", "model.pt", "roberta_large", 1.0, False, [], "/b")
    line = " ".join(rte)
    for part in ("--lr 2e-05", "--batch-size 16", "--total-num-update 2036", "--warmup-updates 122",
                 "--arch roberta_large", "--separator-token 2", "--fp16", "--rdrop-alpha 1.0"):
        assert part in line, part
    sts = " ".join(glue.train_command("STS-B", "b", "s", "m", "roberta_large", 0.5, True, ["--x"], "/b"))
    assert "--regression-target" in sts and "--best-checkpoint-metric loss" in sts and "--cpu" in sts
    assert sts.endswith("--x") and "--fp16" not in sts


def test_pretrained_setting_fine_tunes_the_pretrained_encoder_and_runs_childtuning(cpu_recipe, shared_data,
                                                                                  tmp_path, monkeypatch, capsys):
    """--setting tiny-pretrained: pretrain.py pre-trains the encoder (masked_lm on WikiText-2 and the
    tasks' training inputs), every run restores it, and the ChildTuning runs train with their
    optimizer (D: the seed's mask, computed once and shared by both D runs)."""
    from rdrop_torch.childtuning import unpack_bits
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    work, pre = tmp_path / "w", tmp_path / "pre"
    runs = ["baseline", "childtuning_f", "childtuning_d", "rdrop", "rdrop_childtuning_d"]
    rows = cpu_recipe.main(["--dataset", "sst2", "--setting", "tiny-pretrained", "--seeds", "1",
                            "--runs", ",".join(runs), "--workdir", str(work), "--pretrain-workdir", str(pre)])
    assert [r["run"] for r in rows] == runs
    ckpt = pre / "ckpt" / "checkpoint_last.pt"
    pretrained = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert pretrained["cfg"]["task"]["_name"] == "masked_lm"
    corpus = (pre / "raw" / "train.txt").read_text(encoding="utf-8")
    assert "<unk>" in corpus and corpus == corpus.lower() and " @-@ " not in corpus
    # fine-tuning binarizes with the pre-training's word ids
    assert (work / "bin" / "input0" / "dict.txt").read_text() == (pre / "bin" / "dict.txt").read_text()
    logs = {r: (work / "runs" / f"{r}-seed1" / "train.log").read_text() for r in runs}
    for run, log in logs.items():
        assert f"Loaded checkpoint {ckpt}" in log, run
        assert ("rdrop_kl_loss" in log) == run.startswith("rdrop"), run
        assert ("'_name': 'childtuning_adam'" in log) == ("childtuning" in run), run
    mask_path = work / "masks" / "seed1" / "mask.pt"
    for run in ("childtuning_d", "rdrop_childtuning_d"):
        assert f"--childtuning-mask {mask_path}" in logs[run].splitlines()[0]
    assert "--childtuning-mode F" in logs["childtuning_f"].splitlines()[0]
    # the mask: the Fisher of the pre-trained encoder's layers, top 30% kept, head and embeddings out
    state = torch.load(mask_path, map_location="cpu", weights_only=False)
    kept = sum(int(unpack_bits(state["masks"][n], state["shapes"][n]).sum()) for n in state["masks"])
    total = sum(math.prod(s) for s in state["shapes"].values())
    assert abs(kept / total - 0.3) < 0.01
    assert all(".layers." in n for n in state["masks"]) and state["masks"]
    assert f"Fisher of the weights in {ckpt}" in (work / "masks" / "seed1" / "train.log").read_text()
    # bad --runs: named, at startup
    with pytest.raises(SystemExit):
        cpu_recipe.main(["--dataset", "sst2", "--setting", "tiny", "--runs", "childtuning_f",
                         "--workdir", str(tmp_path / "x")])
    assert "use --setting pretrained" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cpu_recipe.main(["--dataset", "sst2", "--setting", "tiny", "--runs", "rdrop_softmax",
                         "--workdir", str(tmp_path / "x")])
    assert "unknown ['rdrop_softmax']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cpu_recipe.main(["--dataset", "sst2", "--setting", "tiny", "--train-lines", "-1",
                         "--workdir", str(tmp_path / "x")])
    assert "--train-lines must be >= 0, got -1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, shared_data):
    """A small random BERT whose vocabulary has CoLA's and STS-B's frequent words (the rest falls
    back to single-character pieces): what --setting tiny-minilm converts instead of the 90 MB one."""
    from collections import Counter

    from recipes.classification.wordpiece import basic_tokenize
    counts = Counter()
    for rel in ("glue/CoLA/train.tsv", "glue/STS-B/sts-train.csv"):
        counts.update(basic_tokenize((shared_data / rel).read_text(encoding="utf-8")[:200000]))
    return write_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", words=[w for w, _ in counts.most_common(600)])


def test_minilm_setting_fine_tunes_the_converted_bert(cpu_recipe, tiny_bert, shared_data, tmp_path, monkeypatch,
                                                      capsys):
    """--setting tiny-minilm: the BERT is converted once (convert_bert.py), the data tokenized with its
    WordPiece and binarized with its dictionary, every run restores it, and the kept checkpoints score."""
    from recipes.classification.wordpiece import WordPiece, read_vocab
    monkeypatch.setenv("RDROP_DATA_DIR", str(shared_data))
    work = tmp_path / "cola"
    runs = ["baseline", "rdrop_childtuning_d"]  # R-Drop and ChildTuning-D (its mask) on the converted encoder
    common = ["--setting", "tiny-minilm", "--bert-dir", str(tiny_bert), "--seeds", "1"]
    rows = cpu_recipe.main(["--dataset", "cola", *common, "--runs", ",".join(runs), "--workdir", str(work)])
    assert [r["run"] for r in rows] == runs
    encoder = work / "encoder"
    assert (work / "bin" / "input0" / "dict.txt").read_text() == (encoder / "dict.txt").read_text()
    first = (shared_data / "glue" / "CoLA" / "train.tsv").read_text(encoding="utf-8").splitlines()[0]
    wordpiece = WordPiece(read_vocab(tiny_bert / "vocab.txt"))
    assert (work / "raw" / "train.input0").read_text().splitlines()[0] == " ".join(wordpiece(first.rsplit("\t", 1)[0]))
    for run in runs:
        log = (work / "runs" / f"{run}-seed1" / "train.log").read_text()
        assert f"Loaded checkpoint {encoder / 'model.pt'}" in log, run
        assert "--report-mcc" in log.splitlines()[0] and "--encoder-embed-dim 32" in log.splitlines()[0]
        assert ("rdrop_kl_loss" in log) == run.startswith("rdrop"), run
    assert "valid_mcc" in cpu_recipe.read_valid_stats(work / "runs" / "baseline-seed1" / "train.log")[-1]
    check_kept_checkpoints(cpu_recipe, "cola", work, shared_data, tmp_path, runs)
    # --estimate times the runs on the converted encoder
    capsys.readouterr()
    cpu_recipe.main(["--dataset", "cola", *common, "--runs", "rdrop_childtuning_d", "--workdir", str(work),
                     "--estimate", "1"])
    printed = capsys.readouterr().out
    assert "[estimate] rdrop_childtuning_d:" in printed and "[estimate] mask (ChildTuning-D)" in printed

    # a pair as BERT was pre-trained: <s> a </s> b </s> (= [CLS] a [SEP] b [SEP]), no RoBERTa double separator
    import rdrop_fairseq  # noqa: F401
    from fairseq import checkpoint_utils
    work = tmp_path / "stsb"
    cpu_recipe.main(["--dataset", "stsb", *common, "--runs", "baseline", "--workdir", str(work)])
    assert "--separator-token" not in (work / "runs" / "baseline-seed1" / "train.log").read_text().splitlines()[0]
    _, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(work / "runs" / "baseline-seed1" / "checkpoint_best.pt")], arg_overrides={"data": str(work / "bin")})
    task.load_dataset("valid")
    tokens = task.dataset("valid")[0]["net_input.src_tokens"].tolist()
    d = task.source_dictionary
    a, b = ((work / "raw" / f"valid.input{k}").read_text().splitlines()[0].split() for k in (0, 1))
    assert tokens == [d.bos(), *map(d.index, a), d.eos(), *map(d.index, b), d.eos()]
    # (STS-B's blind format is predicted in the from-scratch test)
    check_kept_checkpoints(cpu_recipe, "stsb", work, shared_data, tmp_path, ["baseline"], predict_blind=False)
    # bad use: named at startup
    with pytest.raises(SystemExit):
        cpu_recipe.main(["--dataset", "cola", "--setting", "tiny-minilm", "--workdir", str(tmp_path / "x")])
    assert "needs --bert-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cpu_recipe.main(["--dataset", "cola", "--setting", "cpu", "--workdir", str(tmp_path / "x")])
    assert "setting cpu has no such run" in capsys.readouterr().err
