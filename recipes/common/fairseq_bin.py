"""Where fairseq's console scripts (fairseq-preprocess, fairseq-train, fairseq-generate) are.

In a virtual environment they sit beside its python. ``pip install --target DIR`` writes them to
DIR/bin instead, with the other packages in DIR (a machine without a package registry, wheels
carried in: benchmarks/gpu_offline.sh puts DIR/bin first on PATH), so PATH is the second place
looked in."""
import shutil
import sys
from pathlib import Path


def fairseq_bin_dir():
    """The folder holding ``fairseq-train``: the interpreter's own, else the first on PATH; an error
    naming both when neither has it."""
    beside = Path(sys.executable).parent
    if (beside / "fairseq-train").exists():
        return beside
    found = shutil.which("fairseq-train")
    if found:
        return Path(found).parent
    raise SystemExit(f"fairseq-train is neither in {beside} (beside {sys.executable}) nor on PATH: "
                     f"install fairseq (pip install -e .) or put the bin/ folder of a pip --target "
                     f"install on PATH")
