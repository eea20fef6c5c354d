"""The two packages' import structure: every import between their modules (read from the source,
imports inside functions too) forms no circle, and rdrop_torch imports nothing of rdrop_fairseq."""
import ast

from helpers import REPO

PACKAGES = ("rdrop_torch", "rdrop_fairseq")


def modules():
    """{dotted name: path} of every module of the two packages (a package is its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_edges(found):
    """{module: set of modules of the two packages it imports}."""
    edges = {}
    for name, path in found.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base[:len(base) - node.level + (1 if is_package else 0)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                targets.update(f"{module}.{alias.name}" for alias in node.names)
                targets.add(module)
        # a name is the deepest module it names ("from .x import f": module x, not x.f)
        edges[name] = {t for t in targets if t in found} - {name}
        edges[name] = {t for t in edges[name]
                       if not any(other.startswith(t + ".") and other in edges[name] for other in edges[name])}
    return edges


def find_circle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_no_import_circle():
    edges = import_edges(modules())
    assert "rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop" in edges["rdrop_fairseq.criterions"]
    assert "rdrop_torch.fused" in edges["rdrop_fairseq.criterions.label_smoothed_cross_entropy_with_rdrop"]
    assert find_circle(edges) is None, " -> ".join(find_circle(edges))


def test_the_detector_sees_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_rdrop_torch_never_imports_the_plugin():
    edges = import_edges(modules())
    assert not [(a, b) for a, targets in edges.items() for b in targets
                if a.startswith("rdrop_torch") and b.startswith("rdrop_fairseq")]
