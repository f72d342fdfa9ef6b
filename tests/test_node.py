"""The Node.js reader of examples/node (written from docs/manifest.md alone) against the Python runtime: the
cut generator's image bit for bit and the objective's gradient to 1e-6 (relative), on dcgan c=1 and began c=2;
tampered files refused. Skipped where node or npm is missing."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gs_onnx.generator import registry
from gs_onnx.engine.cut import CutGenerator
from gs_onnx.generator.latent import LatentLayout, init_latent
from gs_onnx.solve.objective import Objective
from gs_onnx.physics import Operator

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "examples" / "node"

pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs node and npm")


@pytest.fixture(scope="module")
def node_reader():
    """examples/node with onnxruntime-node installed (npm, without its download script: the CPU binaries ship
    in the package)."""
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        p = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            pytest.skip(f"npm install failed (no registry?): {p.stderr[-500:]}")
    return NODE_DIR


class Dense(Operator):
    """A plain dense matrix as an operator (the same A the Node reader reads from a .npy)."""

    def __init__(self, A):
        self.A = A
        self.m, self.n = A.shape

    def forward(self, x):
        return (np.asarray(x, np.float32) @ self.A.T).astype(np.float32)

    def adjoint(self, y):
        return (np.asarray(y, np.float32) @ self.A).astype(np.float32)

    def describe(self):
        return {"type": "dense-test"}

    @property
    def nbytes(self):
        return self.A.nbytes


def _node(args, cwd):
    return subprocess.run(["node", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model, cut", [("dcgan", 1), ("began", 2)])
def test_node_reader_agrees_with_python(node_reader, tmp_path, model, cut):
    man = registry.load(model)
    gen = CutGenerator(man, cut, "cpu")  # the per-block sessions: the same graphs the Node reader chains
    lay = LatentLayout(gen.shapes)
    z = init_latent("cn01", lay.size, np.random.default_rng(0)).astype(np.float32)
    rng = np.random.default_rng(1)
    A = (rng.standard_normal((40, man.n)) / np.sqrt(40)).astype(np.float32)
    y = (rng.standard_normal(40) * 0.3).astype(np.float32)
    for name, arr in (("z", z), ("A", A), ("y", y)):
        np.save(tmp_path / f"{name}.npy", arr)
    p = _node(["check.js", man.root, cut, tmp_path / "z.npy", tmp_path / "A.npy", tmp_path / "y.npy", tmp_path],
              node_reader)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["inputs"] == list(gen.inputs) and out["size"] == lay.size
    image = np.load(tmp_path / "image.npy")
    np.testing.assert_array_equal(image, gen.forward(lay.unpack(z)))  # bit for bit
    f, g = Objective(gen, Dense(A), y).value_and_grad(z.astype(np.float64))
    g_node = np.load(tmp_path / "grad.npy")[0].astype(np.float64)
    assert out["f"] == pytest.approx(f, rel=1e-6)
    assert np.linalg.norm(g_node - g) <= 1e-6 * np.linalg.norm(g)


def test_node_reader_refuses_tampered_files(node_reader, tmp_path):
    src = registry.load("dcgan").root
    model = tmp_path / "dcgan"
    shutil.copytree(src, model)
    raw = bytearray((model / "block3.weights.bin").read_bytes())
    raw[100] ^= 1
    (model / "block3.weights.bin").write_bytes(bytes(raw))
    for name in ("z", "y"):
        np.save(tmp_path / f"{name}.npy", np.zeros(10, np.float32))
    p = _node(["check.js", model, 1, tmp_path / "z.npy", "identity", tmp_path / "y.npy", tmp_path], node_reader)
    assert p.returncode == 2 and "checksum mismatch" in p.stderr
    shutil.copy(src / "block3.weights.bin", model / "block3.weights.bin")
    m = json.loads((model / "manifest.json").read_text())
    m["blocks"][1]["weights"] = "../escape.bin"
    (model / "manifest.json").write_text(json.dumps(m))
    p = _node(["check.js", model, 1, tmp_path / "z.npy", "identity", tmp_path / "y.npy", tmp_path], node_reader)
    assert p.returncode == 2 and "not a relative path inside the model folder" in p.stderr


def test_node_fit_example_runs(node_reader, tmp_path):
    from gs_onnx.io.images import load_image

    np.save(tmp_path / "face.npy", load_image(ROOT / "gs_onnx" / "samples" / "celeba64_182638.jpg", 64))
    p = _node(["fit.js", registry.load("dcgan").root, 1, tmp_path / "face.npy", 60], node_reader)
    assert p.returncode == 0, p.stderr
    psnrs = [float(ln.split("PSNR ")[1].split(" dB")[0]) for ln in p.stdout.splitlines() if "PSNR" in ln]
    assert psnrs[-1] > psnrs[0] + 5 and (tmp_path / "recovered.npy").is_file()


def _recovery_folder(tmp_path, model, image, operator, iters, method="auto"):
    """gs-measure one bundled face, gs-export recovery its folder (a short plan), and Python's image of it."""
    from click.testing import CliRunner

    from gs_onnx.cli import measure_main
    from gs_onnx.cli.recovery import main as export_recovery
    from gs_onnx.io.images import load_image
    from gs_onnx.io.recovery_folder import read_folder
    from gs_onnx.solve.recovery_graph import GraphRecovery

    face = ROOT / "gs_onnx" / "samples" / image
    r = CliRunner().invoke(measure_main, [str(face), "--model", model, "--operator", operator, "--ratio", "0.1628",
                                          "-o", str(tmp_path / "meas.npy")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(export_recovery, ["--measurements", str(tmp_path / "meas.npy"), "--max-iter", str(iters),
                                             "--method", method, "-o", str(tmp_path / "graph")])
    assert r.exit_code == 0, r.output
    man = registry.load(model)
    np.save(tmp_path / "ref.npy", load_image(face, man.image_shape[1]))
    graph, inputs, _ = read_folder(tmp_path / "graph")
    return GraphRecovery(graph).run(inputs)["image"]


# dcgan on the Gaussian: its default, gs-pnp (the PnP stage in the graph); began on the DCT operator: gs (20
# iterations, short enough for a test; its default there is gs-pnp too)
@pytest.mark.parametrize("model, image, operator, iters, method", [
    ("dcgan", "celeba64_182638.jpg", "gaussian", 100, "auto"), ("began", "celeba_aligned_00000.jpg", "srdct", 20, "gs")])
def test_node_runs_a_recovery_folder(node_reader, tmp_path, model, image, operator, iters, method):
    """recover.js (one session run, files verified against recovery.json) gets Python's image of the same folder
    and prints its PSNR; an altered input is refused in one line with exit 2."""
    from gs_onnx.metrics import psnr

    py = _recovery_folder(tmp_path, model, image, operator, iters, method)
    p = _node(["recover.js", tmp_path / "graph", tmp_path / "ref.npy", tmp_path / "node.npy"], node_reader)
    assert p.returncode == 0, p.stderr
    node = np.load(tmp_path / "node.npy")
    assert np.abs(node - py).max() <= 1e-4
    shown = float(p.stdout.split("PSNR ")[1].split(" dB")[0])
    assert shown == pytest.approx(psnr(py, np.load(tmp_path / "ref.npy")), abs=0.01)
    y = np.load(tmp_path / "graph" / "inputs" / "y.npy")
    y[0, 0] += 1
    np.save(tmp_path / "graph" / "inputs" / "y.npy", y)
    p = _node(["recover.js", tmp_path / "graph"], node_reader)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "sha256" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


SWIFTSHADER_ICD = Path("/usr/lib/chromium/vk_swiftshader_icd.json")


def _vulkan_loader() -> bool:
    import ctypes.util

    return ctypes.util.find_library("vulkan") is not None


@pytest.mark.skipif(not SWIFTSHADER_ICD.is_file(), reason="no Vulkan driver Dawn accepts here: Chromium's SwiftShader "
                    "ICD is missing (.ci/run installs chromium)")
@pytest.mark.skipif(not _vulkan_loader(), reason="no Vulkan loader here (libvulkan.so.1: Debian's libvulkan1, which "
                    ".ci/run installs with chromium)")
def test_node_runs_a_recovery_folder_on_webgpu(node_reader, tmp_path):
    """recover.js --ep webgpu: onnxruntime-node's WebGPU provider (Dawn on Vulkan; here Chromium's SwiftShader, a
    software Vulkan: Debian 12's lavapipe lacks a feature Dawn requires) runs a 2-iteration dcgan folder to Python's
    image; without a Vulkan driver it is refused in one line."""
    import os

    py = _recovery_folder(tmp_path, "dcgan", "celeba64_182638.jpg", "gaussian", 2, "gs")
    env = {**os.environ, "VK_ICD_FILENAMES": str(SWIFTSHADER_ICD), "XDG_RUNTIME_DIR": str(tmp_path)}
    p = subprocess.run(["node", "recover.js", str(tmp_path / "graph"), str(tmp_path / "ref.npy"),
                        str(tmp_path / "node.npy"), "--ep", "webgpu"], cwd=node_reader, capture_output=True, text=True,
                       timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "s on webgpu" in p.stdout
    assert np.abs(np.load(tmp_path / "node.npy") - py).max() <= 1e-4
    env["VK_ICD_FILENAMES"] = str(tmp_path / "none.json")   # no driver at all
    p = subprocess.run(["node", "recover.js", str(tmp_path / "graph"), "--ep", "webgpu"], cwd=node_reader,
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: --ep webgpu: onnxruntime-node could not start WebGPU")
