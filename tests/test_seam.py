"""The seam statistic: how much sharper an image is across a lattice's cell boundaries than elsewhere
(BEGAN's 16-px grid, issue 28). Checked on the truth (real faces), on a lattice we draw ourselves, on images
the generator made (its lattice grows when its skip source leaves the trained range), and in the outputs of
gs-recover and gs-experiment."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gs_onnx.generator import registry
from gs_onnx.io.images import load_image
from gs_onnx.metrics import seam
from conftest import SAMPLES


def test_real_faces_have_no_lattice():
    for k in range(4):
        x = load_image(SAMPLES / f"celeba_aligned_{k:05d}.jpg", 128)
        assert 0.8 < seam(x, 16) < 1.2


def test_a_drawn_lattice_is_found_at_its_period_only():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    smooth = np.stack([0.3 + 0.4 * np.sin(3 * xx + c) * np.cos(2 * yy) for c in range(3)]).astype(np.float32)
    cells = np.kron(rng.normal(0, 0.05, (3, 8, 8)), np.ones((16, 16)))     # nearest-upsampled 8 x 8, as BEGAN's h1
    lattice = smooth + cells.astype(np.float32)
    assert abs(seam(smooth, 16) - 1.0) < 0.05
    assert seam(lattice, 16) > 3
    assert seam(lattice, 13) < 1.2                       # no lattice at another period
    assert seam(lattice + 0.2, 16) == pytest.approx(seam(lattice, 16))
    assert seam(lattice.transpose(0, 2, 1), 16) == pytest.approx(seam(lattice, 16))
    with pytest.raises(ValueError):
        seam(np.zeros((3, 8, 8)), 16)


def test_lattice_cell_comes_from_the_skip_source(tiny_models):
    from gs_onnx.generator.manifest import load_manifest

    assert registry.load("began", verify=False).lattice_cell == 16      # h1 8 x 8 -> 128 px
    assert registry.load("dcgan", verify=False).lattice_cell is None    # no tensor read by two blocks
    assert load_manifest(tiny_models["began"][1], verify=False).lattice_cell == 4   # 8 x 8 -> 32 px
    assert load_manifest(tiny_models["began_noskip_tanh"][1], verify=False).lattice_cell is None


def test_began_draws_its_lattice_when_its_latent_leaves_the_prior():
    """Images the generator made: samples from its prior are near the truth's seam; the same latents ten times
    larger push h1 off its trained range and the 16-px lattice appears (the issue's 1.0-1.3 against 2.4)."""
    from gs_onnx.engine.cut import CutGenerator

    man = registry.load("began")
    gen = CutGenerator(man, 0, device="cpu")
    z = np.random.default_rng(1).uniform(-1, 1, (4, 64)).astype(np.float32)
    normal = [seam(np.clip(x, 0, 1), 16) for x in gen({"z": z})]
    large = [seam(np.clip(x, 0, 1), 16) for x in gen({"z": 10 * z})]
    assert np.mean(normal) < 1.4 and np.mean(large) > np.mean(normal) + 0.3


def test_gs_recover_reports_the_seam_beside_the_truths(tiny_models, tmp_path):
    from click.testing import CliRunner

    from gs_onnx import cli

    model = tiny_models["began"][1]
    img = SAMPLES / "celeba64_182638.jpg"
    r = CliRunner().invoke(cli.measure_main, [str(img), "--model", str(model), "--ratio", "0.2",
                                              "-o", str(tmp_path / "m.npy")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli.recover_main, [str(tmp_path / "m.npy"), "--model", str(model), "--max-iter", "3",
                                              "--restarts", "1", "--reference", str(img), "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "o" / "report.json").read_text())["images"][0]
    x = load_image(img, 32)
    rec = np.load(tmp_path / "o" / "recovered.npy")[0]
    assert row["seam"] == {"period": 4, "recovered": round(seam(rec, 4), 4), "truth": round(seam(x, 4), 4)}
    assert f"seam {row['seam']['recovered']:.2f} (truth {row['seam']['truth']:.2f})" in r.stdout


def test_experiment_summary_has_a_seam_column():
    from gs_onnx.experiment.report import markdown

    base = {"preset": "cs", "model": "began", "variant": "", "dataset": "celeba-test", "method": "gs", "init": "cn01",
            "ratio": 0.1628, "operator": "gaussian", "noise": True, "cut": 2, "restart": 0, "seed": 0,
            "options": [], "max_iter": None, "n": 49152, "free_parameters": 40960, "seconds": 1.0,
            "measurement_error": 1.0}
    rows = [dict(base, index=i, image=f"f{i}", psnr=24.0 + i, seam=1.4 + 0.1 * i, seam_truth=1.0) for i in range(2)]
    text = markdown(rows)
    assert "seam (truth)" in text and "| 1.45 (1.00) |" in text
    assert "seam" not in markdown([{k: v for k, v in r.items() if not k.startswith("seam")} for r in rows])
