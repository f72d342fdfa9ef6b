"""The recovery-folder conformance kit (docs/recovery-graph.md, sections 12-13): valid folders of every model family,
several operators, both optimisers and both graph methods, and invalid folders that each break one rule; the Python
reader (gs_onnx) and the Node example (examples/web/rules.mjs, the page's too) handle every folder as kit.json says, and the Node
reader's images are the Python reader's (1e-4)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KIT_DIR = ROOT / "examples" / "conformance"
NODE_DIR = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("kit")
    p = subprocess.run([sys.executable, str(KIT_DIR / "make_kit.py"), str(d)], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return d


def test_the_kit_covers_every_rule(kit):
    spec = json.loads((kit / "kit.json").read_text())
    bad = [e for e in spec["folders"] if e["expect"] == "refuse"]
    good = [e for e in spec["folders"] if e["expect"] == "run"]
    assert len(bad) >= 30 and {e["rule"] for e in bad} >= {1, 2, 3, 4, 5, 6, 7, 8, 10}
    assert {e["model"] for e in good} == {"dcgan", "began", "vae"}
    kinds = {json.loads((kit / e["folder"] / "recovery.json").read_text())["operator"]["type"] for e in good}
    methods = {json.loads((kit / e["folder"] / "recovery.json").read_text()).get("method", "gs") for e in good}
    from gs_onnx.physics import registry as operators

    assert kinds == set(operators()) - {"adjoint", "compose"} and methods == {"gs", "gs-pnp", "gs-tv"}


def test_the_python_reader_follows_the_kit(kit):
    p = subprocess.run([sys.executable, str(KIT_DIR / "check.py"), str(kit), "--json", str(kit / "python.json")],
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    results = json.loads((kit / "python.json").read_text())
    assert all(r["agrees"] for r in results)


@pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm")
def test_the_node_reader_follows_the_kit(kit):
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        p = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            pytest.skip(f"npm install failed (no registry?): {p.stderr[-500:]}")
    if not (kit / "python.json").exists():   # the Python reader's images, for the comparison
        subprocess.run([sys.executable, str(KIT_DIR / "check.py"), str(kit)], capture_output=True, timeout=1800)
    p = subprocess.run(["node", str(NODE_DIR / "conformance.js"), str(kit)], capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(("ok", "FAIL"))]
    spec = json.loads((kit / "kit.json").read_text())
    assert len(lines) == len(spec["folders"]) and all(ln.startswith("ok") for ln in lines)
    assert sum("from Python's image" in ln for ln in lines) == sum(e["expect"] == "run" for e in spec["folders"])


def test_the_schema_accepts_every_valid_folder_and_the_toolkits_own(kit):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "gs_onnx" / "schema" / "recovery.schema.json").read_text())
    spec = json.loads((kit / "kit.json").read_text())
    for e in spec["folders"]:
        if e["expect"] == "run":   # L-BFGS and Adam, gs and gs-pnp
            jsonschema.validate(json.loads((kit / e["folder"] / "recovery.json").read_text()), schema)
