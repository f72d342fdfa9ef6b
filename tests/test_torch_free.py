"""The runtime ``gs_onnx`` must work without torch (and without the export stage ``gs_export``).

* dynamic: a fresh interpreter where ``import torch`` raises ImportError imports every ``gs_onnx`` module
  and runs a tiny gs-measure + gs-recover on the shipped model; torch is never imported (nor tried).
* static: no ``gs_onnx`` source file imports torch or gs_export, at any nesting level.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gs_onnx

PKG = Path(gs_onnx.__file__).resolve().parent
FORBIDDEN = ("torch", "gs_export")

CHILD = textwrap.dedent(r'''
    import importlib, importlib.abc, json, pkgutil, sys, tempfile
    from pathlib import Path

    attempts = []

    class Block(importlib.abc.MetaPathFinder):
        """Refuse torch (and its submodules) and the export stage, recording every attempt."""

        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in ("torch", "gs_export"):
                attempts.append(name)
                raise ImportError(f"{name} is blocked: the runtime must be torch-free")
            return None

    for mod in [m for m in sys.modules if m.split(".")[0] in ("torch", "gs_export")]:
        del sys.modules[mod]
    sys.meta_path.insert(0, Block())

    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("blocker failed: torch imported")
    attempts.clear()

    import gs_onnx
    imported = []
    for info in pkgutil.walk_packages(gs_onnx.__path__, "gs_onnx."):
        importlib.import_module(info.name)
        imported.append(info.name)

    from click.testing import CliRunner
    from gs_onnx.cli import measure_main, models_main, recover_main

    samples = Path(gs_onnx.__file__).resolve().parent / "samples"
    img = samples / "celeba64_182638.jpg"
    tmp = Path(tempfile.mkdtemp())
    runner = CliRunner()
    r1 = runner.invoke(measure_main, [str(img), "--ratio", "0.1628", "-o", str(tmp / "meas.npy")])
    r2 = runner.invoke(recover_main, [str(tmp / "meas.npy"), "--cut", "1", "-o", str(tmp / "out"),
                                      "--restarts", "1", "--max-iter", "3", "--reference", str(img)])
    r3 = runner.invoke(models_main, ["--json"])
    r4 = runner.invoke(recover_main, [str(tmp / "meas.npy"), "--method", "mganprior", "--codes", "2",
                                      "-o", str(tmp / "out4"), "--restarts", "1", "--max-iter", "3"])
    r5 = runner.invoke(recover_main, [str(tmp / "meas.npy"), "--method", "lasso-dct", "--max-iter", "5",
                                      "-o", str(tmp / "out5")])
    report = json.loads((tmp / "out" / "report.json").read_text()) if r2.exit_code == 0 else None
    before_torch_methods = list(attempts)
    # a method that needs torch: one line naming the extra, nothing written
    r6 = runner.invoke(recover_main, [str(tmp / "meas.npy"), "--method", "iagan", "-o", str(tmp / "out6")])
    print(json.dumps({
        "imported": imported,
        "exit_codes": [r1.exit_code, r2.exit_code, r3.exit_code, r4.exit_code, r5.exit_code],
        "errors": [r.stderr + repr(r.exception) for r in (r1, r2, r3, r4, r5) if r.exit_code != 0],
        "psnr": report and report["images"][0]["psnr"],
        "torch_method": [r6.exit_code, r6.stderr, (tmp / "out6").exists()],
        "attempts": before_torch_methods,
        "loaded": sorted(m for m in sys.modules
                         if m.split(".")[0] in ("torch", "gs_export") and sys.modules[m] is not None),
    }))
''')


def test_runtime_works_with_torch_blocked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("GS_ONNX_MODELS", "PYTHONPATH")}
    p = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    expected = {f"gs_onnx.{f.stem}" for f in PKG.glob("*.py") if f.stem != "__init__"}
    assert expected <= set(res["imported"]), expected - set(res["imported"])
    assert res["exit_codes"] == [0, 0, 0, 0, 0], res["errors"]
    code, err, written = res["torch_method"]
    assert code == 2 and not written, res["torch_method"]
    assert len(err.splitlines()) == 1 and "needs the export extra (torch)" in err, err
    assert isinstance(res["psnr"], float)
    assert res["loaded"] == [], res["loaded"]
    # not even an optional `try: import torch` on the way
    assert res["attempts"] == [], res["attempts"]


def _imports(tree: ast.AST):
    """(module name, line) of every import statement, including those nested in functions or try blocks."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield node.module, node.lineno
        elif isinstance(node, ast.Call):
            # importlib.import_module("torch") / __import__("torch") with a literal name
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if fname in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno


def test_no_torch_or_export_imports_in_source():
    files = sorted(PKG.rglob("*.py"))
    assert len(files) >= 10, files
    bad = []
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for name, line in _imports(tree):
            if name.split(".")[0] in FORBIDDEN:
                bad.append(f"{f.relative_to(PKG.parent)}:{line}: imports {name}")
    assert not bad, "\n".join(bad)


def test_no_relative_import_escapes_package():
    """``from .. import x`` inside gs_onnx would reach the repository root (and so possibly gs_export)."""
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        depth = len(f.relative_to(PKG).parts)  # 1 for gs_onnx/x.py
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > depth:
                bad.append(f"{f.name}:{node.lineno}")
    assert not bad, bad
