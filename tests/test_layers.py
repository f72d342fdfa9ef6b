"""The runtime's packages are layers and the imports between them go one way (docs/architecture.md).

Every import in gs_onnx/ (top of module or inside a function alike) is read with ``ast``; the test fails on
an import from a lower layer to a higher one, on an import between two packages of the same layer, and on an
import circle between modules. The old module paths (before the layer packages) end in a
``ModuleNotFoundError`` (CHANGELOG.md says where each went).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gs_onnx"

#: layer of each top-level module or package of gs_onnx; a module imports only from its own package or lower layers.
LAYERS = {
    "errors": 0, "_version": 0, "metrics": 0,
    "io": 1,
    "generator": 2, "physics": 2,
    "engine": 3,
    "solve": 4,
    "experiment": 5,
    "cli": 6,
    "__init__": 7, "__main__": 7,
}
#: packages of one layer that may import each other's modules (none: one package a layer, or none between them)
SAME_LAYER_OK: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The gs_onnx modules a file imports (``from .x import y`` gives x, and x.y where y is a module)."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "gs_onnx")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "gs_onnx":
                target = node.module
            else:
                continue
            out.add(target)
            for a in node.names:
                sub = PKG.parent / (target + "." + a.name).replace(".", "/")
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    out.add(target + "." + a.name)
    out.discard(mod)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PKG.rglob("*.py"))}


def layer(mod: str) -> tuple[str, int]:
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"{mod}: gs_onnx/{top} has no layer in tests/test_layers.py (and docs/architecture.md)")
    return top, LAYERS[top]


def test_imports_go_down_the_layers():
    bad = []
    for mod, targets in graph().items():
        top, lvl = layer(mod)
        for t in targets:
            ttop, tlvl = layer(t)
            if ttop == top:
                continue
            if tlvl > lvl or (tlvl == lvl and (top, ttop) not in SAME_LAYER_OK):
                bad.append(f"{mod} ({top}, layer {lvl}) imports {t} ({ttop}, layer {tlvl})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module are the circles."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g.get(root, ()))))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in g:
                    continue
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_circles():
    g = graph()
    # a package's __init__ re-exports its modules: an edge module -> its own package is not a circle
    for mod, targets in g.items():
        g[mod] = {t for t in targets if not mod.startswith(t + ".")}
    circles = strongly_connected(g)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The two checks are not vacuous: a made-up circle and a made-up upward import are caught."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("gs_onnx.solve.restart")[1] > layer("gs_onnx.engine.cut")[1] > layer("gs_onnx.io.images")[1]
    assert "gs_onnx.engine.cut" in imports(PKG / "solve" / "objective.py")


def test_at_most_five_loose_modules():
    loose = sorted(p.name for p in PKG.glob("*.py"))
    assert len(loose) <= 5, loose
    packages = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").exists())
    assert set(packages) <= set(LAYERS), packages


#: the longest a module of the runtime may grow (the house issue: no room a newcomer must read whole to add a method)
MAX_LINES = 600


def test_no_module_is_longer_than_600_lines():
    long = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_old_module_paths_are_gone():
    """The 0.x paths (gs_onnx.cut, gs_onnx.methods, ...) no longer import: CHANGELOG.md says where each went."""
    import importlib

    for old in ("cut", "measurement", "restart", "methods", "objective"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"gs_onnx.{old}")
    changelog = (PKG.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "gs_onnx.cut" in changelog and "gs_onnx.engine.cut" in changelog
