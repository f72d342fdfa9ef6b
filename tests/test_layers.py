"""The runtime's packages are layers and the imports between them go one way (docs/architecture.md).

Every import in gs_onnx/ (top of module or inside a function alike) is read with ``ast``; the test fails on
an import from a lower layer to a higher one, on an import between two packages of the same layer, and on an
import circle between modules. The old module paths (before the layer packages) still import, with a
DeprecationWarning, and give the new objects.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import warnings
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
    "cli": 5, "experiment": 5,
    "__init__": 6, "__main__": 6,
}
#: packages of one layer that may import each other's modules (the two front ends share the command-line kit)
SAME_LAYER_OK = {("experiment", "cli"), ("cli", "experiment")}


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


@pytest.mark.parametrize("old", ["cut", "measurement", "restart", "images", "registry", "objective"])
def test_old_module_paths_warn_and_give_the_new_objects(old):
    import importlib

    import gs_onnx

    homes = [importlib.import_module(f"gs_onnx.{h}") for h in gs_onnx.MOVED_MODULES[old]]
    sys.modules.pop(f"gs_onnx.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(f"gs_onnx.{old}")
    assert any(issubclass(w.category, DeprecationWarning) and homes[0].__name__ in str(w.message) for w in caught)
    if len(homes) == 1:  # the moved module itself, its own name and spec kept
        assert mod is homes[0] and mod.__spec__.name == homes[0].__name__ == mod.__name__
    # every public name of every new home is reachable from the old path, as the same object
    for home in homes:
        for name in [n for n in vars(home) if not n.startswith("_")][:40]:
            assert getattr(mod, name) is getattr(home, name), (old, name)


def test_old_paths_in_a_fresh_interpreter_name_the_callers_line(tmp_path):
    """`from gs_onnx.cut import CutGenerator` in a user's script warns at that line and works; the public API
    (gs_onnx.recover, gs_onnx.make_objective, gs_onnx.physics, ...) needs no old path."""
    script = tmp_path / "user.py"
    script.write_text("import warnings\nwarnings.simplefilter('always')\n"
                      "from gs_onnx.cut import CutGenerator\n"
                      "from gs_onnx.measurement import operator_for, read_measurements, measure\n"
                      "import gs_onnx, gs_onnx.physics\n"
                      "from gs_onnx.engine.cut import CutGenerator as C2\n"
                      "assert CutGenerator is C2 and gs_onnx.recover and gs_onnx.make_objective\n"
                      "assert operator_for is gs_onnx.physics.operator_for\n"
                      "print('ok')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert f"{script}:3: DeprecationWarning: gs_onnx.cut has moved to gs_onnx.engine.cut" in r.stderr
    assert f"{script}:4: DeprecationWarning: gs_onnx.measurement has moved" in r.stderr


def test_nothing_inside_imports_an_old_path():
    import gs_onnx

    old = {f"gs_onnx.{m}" for m in gs_onnx.MOVED_MODULES}
    used = {f"{mod} -> {t}" for mod, targets in graph().items() for t in targets if t in old}
    assert not used, used
