"""The training loop (CPU smoke mode) and the export of its checkpoint, end to end, for each architecture."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import SAMPLES  # noqa: E402


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Two image folders: 64 px-able faces (every sample, centre-cropped) and aligned CelebA faces."""
    d64 = tmp_path_factory.mktemp("faces64")
    dal = tmp_path_factory.mktemp("aligned")
    for p in SAMPLES.glob("*.jpg"):
        shutil.copy(p, d64 / p.name)
        if p.name.startswith("celeba_aligned"):
            shutil.copy(p, dal / p.name)
    return {"dcgan": d64, "began": dal, "vae": dal}


SMOKE = {"dcgan": {"ngf": 8}, "began": {"ch": 8}, "vae": {"widths": [16, 8, 8, 8, 8, 8]}}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["dcgan", "began", "vae"])
def test_smoke_training_resumes_and_exports(arch, faces, tmp_path):
    from gs_export.train import train
    from gs_onnx.engine.cut import CutGenerator
    from gs_onnx.generator.manifest import load_manifest

    run = tmp_path / "run"
    kw = dict(device="cpu", batch=4, config=SMOKE[arch], d_ch=8, bn_batches=2, limit=8)
    r1 = train(arch, faces[arch], run, max_steps=2, **kw)
    assert r1["steps"] == 2 and (run / "generator.pt").exists() and (run / "checkpoint.pt").exists()
    assert (run / "samples_final.png").exists()
    r2 = train(arch, faces[arch], run, max_steps=4, **kw)  # resumes from checkpoint.pt
    assert r2["steps"] == 4
    rec = json.loads((run / "train.json").read_text())
    assert rec["arch"] == arch and rec["losses"] and np.isfinite(rec["losses"][-1][2:]).all()
    sd = torch.load(run / "generator.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())

    from click.testing import CliRunner
    from gs_export.cli import main as export_main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(export_main, ["run", str(run), "--name", f"smoke-{arch}", "--out",
                                               str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    man = load_manifest(tmp_path / "model")
    assert man.provenance["training"]["steps"] == 4
    gen = CutGenerator(man, man.recommended_cut, "cpu")
    z = np.zeros((1, gen.size))
    from gs_onnx.generator.latent import LatentLayout

    x = gen.forward(LatentLayout(gen.shapes).unpack(z))
    assert x.shape == (1, *man.image_shape) and np.isfinite(x).all()


@pytest.mark.slow
def test_untrained_twin_is_marked(tmp_path):
    from click.testing import CliRunner
    from gs_export.cli import main as export_main
    from gs_onnx.generator.manifest import load_manifest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(export_main, ["untrained", "--arch", "dcgan", "--config", '{"ngf": 4}',
                                               "--seed", "3", "--out", str(tmp_path / "u")])
    assert res.exit_code == 0, res.output
    man = load_manifest(tmp_path / "u")
    assert man.untrained and "manual_seed(3)" in man.provenance["weights"]
