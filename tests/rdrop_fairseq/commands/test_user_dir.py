"""The command rdrop-fairseq-user-dir (a setup.py script): it prints the plugin's folder, and only
that, without importing the plugin (so without importing fairseq)."""
import os
import re
import subprocess
import sys

from helpers import BIN, REPO, USER_DIR

SCRIPT = REPO / "rdrop_fairseq" / "commands" / "rdrop-fairseq-user-dir"


def test_the_script_prints_the_package_folder_and_nothing_else():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # -X importtime lists every module imported, on stderr
    out = subprocess.run([sys.executable, "-X", "importtime", str(SCRIPT)], capture_output=True, text=True,
                         env=env, cwd=REPO.parent, check=True)
    assert out.stdout == USER_DIR + "\n"
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "importlib.util" in imported or "importlib" in imported  # the listing works
    assert not {name for name in imported if name.split(".")[0] in ("fairseq", "rdrop_fairseq", "torch")}


def test_setup_py_installs_the_script():
    assert re.search(r'scripts=\["rdrop_fairseq/commands/rdrop-fairseq-user-dir"\]', (REPO / "setup.py").read_text())
    assert os.access(SCRIPT, os.X_OK)


def test_the_installed_command_prints_the_package_directory():
    """The installed command (in CI the venv is made from this checkout)."""
    out = subprocess.run([str(BIN / "rdrop-fairseq-user-dir")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == USER_DIR
