"""A foreign checkpoint imported without reading the source (docs/import.md): a BEGAN of another layout
(keys ``l0.*`` / ``decoder.<i>.*``, 16 channels, 32 px, no skips, Tanh) goes through ``gs-export inspect`` ->
``gs-export keys`` -> ``gs-export checkpoint`` with documented options only; the exported model reproduces the
foreign module's images, its samples and a surgery recovery run, and every wrong guess is one line."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from gs_export.cli import main as export_main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("foreign_began", ROOT / "examples" / "foreign_began.py")
foreign_began = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(foreign_began)
NZ, CH, BASE, SIZE = foreign_began.NZ, foreign_began.CH, foreign_began.BASE, foreign_began.SIZE


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """The stand-in of docs/import.md (examples/foreign_began.py), written as its command line writes it."""
    d = tmp_path_factory.mktemp("foreign")
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "foreign_began.py"), str(d / "G_25.pth")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return foreign_began.make(), d


def _run(args):
    r = CliRunner().invoke(export_main, args)
    return r.exit_code, r.output


def _proposal(out: str) -> tuple[str, dict]:
    m = re.search(r"proposal: --arch (\w+) --config '(\{.*?\})'", out)
    assert m, out
    return m.group(1), json.loads(m.group(2))


@pytest.fixture(scope="module")
def imported(foreign, tmp_path_factory):
    """The walk-through of docs/import.md, step by step; returns (foreign module, model folder, texts)."""
    g, d = foreign
    ckpt, key_map = d / "G_25.pth", d / "map.json"
    # 1. inspect: the checkpoint's tensors and a proposal (architecture, settings, key map)
    code, out_inspect = _run(["inspect", str(ckpt), "--key", "netG", "--write-key-map", str(key_map)])
    assert code == 0, out_inspect
    arch, config = _proposal(out_inspect)
    # 2. keys: what the proposed architecture expects (and the --config keys, where output_activation is)
    code, out_keys = _run(["keys", "--arch", arch, "--config", json.dumps(config)])
    assert code == 0, out_keys
    config["output_activation"] = "tanh"  # the one setting weights cannot tell (inspect says so)
    # 3. checkpoint, as a separate process: the terminal must show no third-party warnings
    model = tmp_path_factory.mktemp("imported") / "my-began"
    p = subprocess.run([str(Path(sys.executable).parent / "gs-export"), "checkpoint", "--arch", arch,
                        "--config", json.dumps(config), "--checkpoint", str(ckpt), "--key", "netG",
                        "--key-map", str(key_map), "--prior", "uniform", "--recommended-cut", "2",
                        "--name", "my-began", "-o", str(model)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "PYTHONWARNINGS": "default"})
    assert p.returncode == 0, p.stderr[-3000:]
    return g, model, {"inspect": out_inspect, "keys": out_keys, "checkpoint_stderr": p.stderr,
                      "checkpoint_stdout": p.stdout, "arch": arch, "config": config, "key_map": key_map}


def test_inspect_proposes_the_architecture_and_key_map(imported):
    _, _, t = imported
    assert t["arch"] == "began"
    assert t["config"] == {"nz": NZ, "ch": CH, "image_size": SIZE, "skip": False, "nc": 3, "base": BASE,
                           "output_activation": "tanh"}
    assert "output_activation cannot be read from weights" in t["inspect"]
    assert "l0.weight [1024, 64]" in t["inspect"]
    key_map = json.loads(Path(t["key_map"]).read_text())
    assert key_map["l0.weight"] == "blocks.0.fc.weight"
    assert key_map["decoder.0.weight"] == "blocks.1.conv1.weight"
    assert key_map["decoder.14.bias"] == "blocks.3.to_rgb.bias"
    # keys lists every --config key with its default, and exactly the targets of the key map
    for name in ("nz", "ch", "image_size", "skip", "output_activation", "nc", "base"):
        assert re.search(rf"^  {name}: ", t["keys"], re.M), name
    listed = set(re.findall(r"^  (blocks\.\S+) \[", t["keys"], re.M))
    assert listed == set(key_map.values())


def test_export_is_quiet_and_records_the_source(imported, foreign):
    _, model, t = imported
    # stderr carries our progress lines and nothing else (torch.onnx, onnxscript and torchvision are silent)
    lines = t["checkpoint_stderr"].strip().splitlines()
    assert lines and all(re.fullmatch(r"my-began: exporting and checking block \d+/\d+", ln) for ln in lines), \
        t["checkpoint_stderr"][-2000:]
    man = json.loads((model / "manifest.json").read_text())
    prov = man["provenance"]
    assert prov["weights"] == "G_25.pth"
    import hashlib
    assert prov["weights_sha256"] == hashlib.sha256((foreign[1] / "G_25.pth").read_bytes()).hexdigest()
    assert man["latent"]["prior"] == "uniform" and man["recommended"]["cut"] == 2
    assert str(foreign[1]) not in (model / "manifest.json").read_text()  # no local path anywhere
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "gs_onnx" / "schema" / "manifest.schema.json").read_text())
    jsonschema.validate(man, schema)


def test_imported_model_reproduces_the_foreign_module(imported):
    from gs_onnx.engine.cut import CutGenerator
    from gs_onnx.generator.manifest import load_manifest

    g, model, _ = imported
    z = np.random.default_rng(0).uniform(-1, 1, (4, NZ)).astype(np.float32)
    with torch.no_grad():
        want = (g(torch.from_numpy(z)).numpy() + 1) / 2  # Tanh output mapped to [0, 1]
    got = CutGenerator(load_manifest(model), 0, device="cpu")({"z": z})
    assert got.shape == (4, 3, SIZE, SIZE)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert want.std() > 0.05  # a real image, not a constant


def test_samples_and_a_surgery_recovery_run(imported, tmp_path):
    """The walk-through's last steps through the user commands: sample grids, then gs-measure and gs-recover
    at the recommended cut on an image the imported generator made (a known solution)."""
    from PIL import Image

    from gs_onnx.engine.cut import CutGenerator
    from gs_onnx.cli.experiment import main as exp_main
    from gs_onnx.cli import measure_main, recover_main
    from gs_onnx.generator.manifest import load_manifest
    from gs_onnx.metrics import psnr

    _, model, _ = imported
    r = CliRunner().invoke(exp_main, ["samples", "--models", str(model), "--count", "2", "--cuts", "0,2",
                                      "-o", str(tmp_path / "samples"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "samples").glob("*.png")), r.output
    z = np.random.default_rng(1).uniform(-1, 1, (1, NZ)).astype(np.float32)
    truth = CutGenerator(load_manifest(model), 0, device="cpu")({"z": z})[0]
    face = tmp_path / "made.png"
    Image.fromarray(np.round(np.clip(truth, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)).save(face)
    meas = tmp_path / "meas.npy"
    r = CliRunner().invoke(measure_main, [str(face), "--model", str(model), "--ratio", "0.5", "--crop", "none",
                                          "-o", str(meas), "-q"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "rec"
    r = CliRunner().invoke(recover_main, [str(meas), "--model", str(model), "--cut", "2", "--restarts", "1",
                                          "--max-iter", "150", "--stop", "fixed", "--reference", str(face),
                                          "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    rec = np.load(out / "recovered.npy", allow_pickle=False)[0]
    png = np.asarray(Image.open(face), dtype=np.float32).transpose(2, 0, 1) / 255
    assert psnr(png, rec) > 25.0, psnr(png, rec)
    assert (out / "recovered_001.png").is_file()


@pytest.mark.parametrize("args, words", [
    (["--config", '{"channels": 16}'], "--config key 'channels' is not one of began's"),
    (["--config", '{"ch": 16, "image_size": 32, "skip": false, "output_activation": "Tanh"}'],
     "output_activation 'Tanh' is not one of"),
    (["--config", '{"ch": 16, "image_size": 32, "skip": false}'], "the checkpoint does not fit: 16 missing (first: blocks.0.fc.weight); 16 unexpected (first: l0.weight)"),
    (["--config", '{"ch": 32, "image_size": 32, "skip": false}', "--key-map", "MAP"], "of another shape"),
    (["--config", '{"ch": 16, "image_size": 32}', "--key-map", "MAP"], "of another shape"),
    (["--config", "{ch: 16}"], "--config is not valid JSON"),
    (["--config", '{"ch": 16, "image_size": 32, "skip": false}', "--output-range", "1,-1"], "LO < HI"),
    (["--config", '{"ch": 16, "image_size": 32, "skip": false}', "--key-map", "nomap"], "neither a named map"),
    (["--config", '{"ch": 16, "image_size": 32, "skip": false}', "--key-map", "LIST"], "must be a JSON object"),
    (["--config", '{"ch": 16, "image_size": 32, "skip": false}', "--key", "G"], "G"),
])
def test_wrong_guesses_are_one_line(imported, foreign, tmp_path, args, words):
    _, d = foreign
    (tmp_path / "list.json").write_text('["l0.weight"]')
    args = [str(d / "map.json") if a == "MAP" else str(tmp_path / "list.json") if a == "LIST" else a for a in args]
    if "--key" not in args:
        args += ["--key", "netG"]
    code, out = _run(["checkpoint", "--arch", "began", "--checkpoint", str(d / "G_25.pth"), "--name", "x",
                      "-o", str(tmp_path / "x"), *args])
    assert code != 0
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert words in lines[0], lines[0]
    assert not (tmp_path / "x").exists()


def test_keys_refuses_an_unknown_config_key():
    code, out = _run(["keys", "--arch", "dcgan", "--config", '{"ngf": 8, "width": 3}'])
    assert code != 0 and "'width'" in out and "Traceback" not in out


def test_every_config_key_is_documented_with_its_default():
    """docs/import.md's table lists every --config key of every architecture with its default."""
    from gs_export.architectures import ARCHITECTURES
    from gs_export.checkpoints import config_keys

    doc = (ROOT / "docs" / "import.md").read_text()
    for arch in ARCHITECTURES:
        for name, default, _ in config_keys(arch):
            row = f"| `{arch}` | `{name}` | `{json.dumps(default)}` |"
            assert row in doc, row
