"""rdrop_torch needs torch alone: no module of it imports fairseq or rdrop_fairseq (read from the
source, so an import inside a function counts too), and in an interpreter where fairseq cannot be
imported the whole package imports and computes."""
import ast
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import rdrop_torch
from helpers import REPO

PACKAGE = Path(rdrop_torch.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)]))


def imported_names(path):
    """Every module name an import statement of ``path`` names (absolute; relative ones as '.x')."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_no_module_imports_fairseq_or_the_plugin():
    assert {"token_loss", "fused", "layout", "sentence_loss", "adaptive_softmax", "childtuning"} <= set(MODULES)
    for path in sorted(PACKAGE.glob("*.py")):
        for name in imported_names(path):
            assert name.split(".")[0] not in ("fairseq", "fairseq_cli", "rdrop_fairseq"), f"{path.name}: {name}"


def test_imports_and_computes_where_fairseq_cannot_be_imported():
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, sys

        class NoFairseq(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("fairseq", "fairseq_cli"):
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")

        sys.meta_path.insert(0, NoFairseq())
        import torch
        import rdrop_torch
        for name in {MODULES!r}:
            importlib.import_module("rdrop_torch." + name)

        g = torch.Generator().manual_seed(0)
        logits = torch.randn(2 * 6, 11, generator=g, dtype=torch.float64)
        target = torch.randint(2, 11, (6,), generator=g)
        target[-1] = 1  # padding
        fused = rdrop_torch.fused_rdrop_loss(logits, target, num_passes=2, alpha=3.0, epsilon=0.1, ignore_index=1)
        ref = rdrop_torch.rdrop_loss_reference(logits.log_softmax(-1), target, num_passes=2, alpha=3.0,
                                               epsilon=0.1, ignore_index=1)
        try:
            import fairseq  # noqa: F401
            blocked = False
        except ModuleNotFoundError:
            blocked = True
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq", "rdrop_fairseq"))
        print(blocked, loaded, all(torch.allclose(a, b) for a, b in zip(fused, ref)), float(ref[2]) > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "[]", "True", "True"]


def test_a_plain_import_works_with_sys_modules_fairseq_none():
    """``python -c "import rdrop_torch"`` where importing fairseq raises ImportError."""
    code = "import sys; sys.modules['fairseq'] = None; import rdrop_torch, rdrop_torch.childtuning; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
