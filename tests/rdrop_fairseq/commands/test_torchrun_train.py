"""The torchrun launcher's command line: torchrun's environment fixes the distributed options
(the 2-process runs with it are tests/rdrop_fairseq/test_distributed.py)."""
import pytest

from rdrop_fairseq.commands.torchrun_train import torchrun_argv


def test_launcher_rejects_options_it_sets():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    argv = torchrun_argv(["data", "--cpu"], env)
    assert argv[:2] == ["data", "--cpu"]
    assert argv[argv.index("--distributed-rank") + 1] == "1"
    assert argv[argv.index("--distributed-world-size") + 1] == "2"
    with pytest.raises(SystemExit, match="--distributed-rank"):
        torchrun_argv(["data", "--distributed-rank=0"], env)
    with pytest.raises(SystemExit, match="RANK"):
        torchrun_argv(["data"], {})
