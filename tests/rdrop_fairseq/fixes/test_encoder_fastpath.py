"""fairseq 0.12.2's encoder fast path (fixes/encoder_fastpath.py): a transformer loaded from a state
dict encodes like the one that was saved (torch >= 2.0 otherwise fails with "Mask Type should be
defined"), and fairseq-train with PyTorch DDP runs although the layers' fast-path copies of their
weights never get a gradient (otherwise "Expected to have finished reduction in the prior
iteration"). On fairseq-fixed, which has no fast path, the same checks hold without the repair."""
import os
import subprocess

import pytest
import torch
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

import flat_layout_checkpoints as tiny_data
from helpers import BIN, REPO, tiny_batch, tiny_transformer
from rdrop_fairseq.fixes.encoder_fastpath import fastpath_copy_names

HAS_FASTPATH = "_load_from_state_dict" in vars(TransformerEncoderLayerBase)  # fairseq 0.12.2


def test_loaded_encoder_matches_the_saved_one(task):
    trained = tiny_transformer(task, seed=0).eval()
    loaded = tiny_transformer(task, seed=1)
    loaded.load_state_dict(trained.state_dict())
    loaded.eval()
    net_input = tiny_batch(task)["net_input"]
    # a left-padded source, as fairseq batches them: the fast path fails only with a padding mask
    net_input["src_tokens"][-1, :2] = task.source_dictionary.pad()
    net_input["src_lengths"][-1] -= 2
    src = (net_input["src_tokens"], net_input["src_lengths"])
    with torch.no_grad():
        expect = trained.encoder(*src)["encoder_out"][0]
        got = loaded.encoder(*src)["encoder_out"][0]
    assert not torch.equal(tiny_transformer(task, seed=1).eval().encoder(*src)["encoder_out"][0], expect)
    torch.testing.assert_close(got, expect)


def test_the_copies_are_the_parameters_a_training_step_leaves_without_gradient(task):
    model = tiny_transformer(task).train()
    model(**tiny_batch(task)["net_input"])[0].float().pow(2).mean().backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert fastpath_copy_names(model) == without_grad
    assert len(without_grad) == (8 * len(model.encoder.layers) if HAS_FASTPATH else 0)


# fairseq's pytorch_ddp passes device_ids=[--device-id], which torch rejects for a CPU module; this
# test-only --user-dir drops them on CPU (what DDP wants there) so that the check runs on CPU, and
# imports the plugin when asked to. The launcher is fairseq-train told torchrun's ranks, as
# rdrop_fairseq.torchrun_train does, but without importing the plugin.
LAUNCHER = '''
import os
import sys

sys.argv += ["--distributed-init-method", "env://", "--distributed-world-size", os.environ["WORLD_SIZE"],
             "--distributed-rank", os.environ["RANK"], "--distributed-no-spawn", "--device-id", os.environ["LOCAL_RANK"]]
from fairseq_cli.train import cli_main

cli_main()
'''
CPU_DDP = '''
import os

from torch.nn.parallel import DistributedDataParallel

import fairseq.models.distributed_fairseq_model as wrapper


class CPUDistributedDataParallel(DistributedDataParallel):
    def __init__(self, module, device_ids=None, output_device=None, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = output_device = None
        super().__init__(module, device_ids=device_ids, output_device=output_device, **kwargs)


wrapper.DistributedDataParallel = CPUDistributedDataParallel
if os.environ.get("WITH_PLUGIN") == "1":
    import rdrop_fairseq  # noqa: F401
'''
UNUSED = "Expected to have finished reduction in the prior iteration"


@pytest.mark.slow
@pytest.mark.parametrize("plugin, switch_off", [(False, False), (True, False), (True, True)],
                         ids=["fairseq alone", "with the plugin", "with the plugin, repair switched off"])
def test_pytorch_ddp_trains_the_transformer(tmp_path, plugin, switch_off):
    if switch_off and not HAS_FASTPATH:
        pytest.skip("fairseq-fixed has no fast path: nothing to switch off")
    user_dir = tmp_path / "cpu_ddp"
    user_dir.mkdir()
    (user_dir / "__init__.py").write_text(CPU_DDP)
    (tmp_path / "launch.py").write_text(LAUNCHER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WITH_PLUGIN="1" if plugin else "0",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("RDROP_FAIRSEQ_NO_ENCODER_FASTPATH_FIX", None)
    if switch_off:
        env["RDROP_FAIRSEQ_NO_ENCODER_FASTPATH_FIX"] = "1"
    cmd = [BIN / "torchrun", "--standalone", "--nproc_per_node", "2", tmp_path / "launch.py",
           tiny_data.TRANSLATION_DATA, "--user-dir", user_dir, *tiny_data.TRANSFORMER,
           "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--optimizer", "adam",
           "--lr", "1e-3", "--max-update", "3", "--batch-size", "8", "--required-batch-size-multiple", "1",
           "--cpu", "--no-save", "--disable-validation", "--num-workers", "0", "--log-format", "simple",
           "--log-interval", "1", "--distributed-backend", "gloo", "--ddp-backend", "pytorch_ddp"]
    proc = subprocess.run(list(map(str, cmd)), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    fails = HAS_FASTPATH and (not plugin or switch_off)
    if fails:
        assert proc.returncode != 0 and UNUSED in log, log[-3000:]
    else:
        assert proc.returncode == 0 and UNUSED not in log, log[-3000:]
        assert "num_updates=3" in log and "done training" in log
