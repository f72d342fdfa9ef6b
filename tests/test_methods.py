"""Every recovery method behind ``gs-recover --method``: same files in, same report rows out, and each
method's own truths (Deep Decoder's size rule, IAGAN's weight phase, the torch generator read back from
the artifacts)."""
from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest

from gs_onnx import cli
from gs_onnx.solve import registry
from gs_onnx.engine.cut import CutGenerator
from gs_onnx.errors import GSError
from gs_onnx.generator.manifest import load_manifest
from gs_onnx.io.measurement import read_measurements
from gs_onnx.physics import operator_for
from gs_onnx.solve import Settings, make_solver
from gs_onnx.metrics import psnr

from test_cli import IMG_A, IMG_B, assert_one_line_error, invoke, measure_pair

torch = pytest.importorskip("torch")

FAST = {
    "gs": ["--restarts", "1", "--max-iter", "4"],
    "mganprior": ["--restarts", "1", "--max-iter", "4", "--codes", "3"],
    "lasso-dct": ["--max-iter", "30"],
    "tv": ["--max-iter", "30"],
    "gs-tv": ["--restarts", "1", "--max-iter", "5"],
    "pnp": ["--max-iter", "5"],
    "gs-pnp": ["--restarts", "1", "--max-iter", "5"],
    "pnp-bm3d": ["--max-iter", "2"],
    "pnp-dct": ["--max-iter", "5"],
    "deep-decoder": ["--steps", "15"],
    "iagan": ["--steps", "6", "--finetune-steps", "4"],
}


@pytest.fixture(scope="module")
def meas(tmp_path_factory):
    return measure_pair(tmp_path_factory.mktemp("meas_methods"))


@pytest.mark.parametrize("method", registry.available())
def test_every_method_writes_the_same_report(tmp_path, meas, method):
    if method == "pnp-bm3d":
        pytest.importorskip("bm3d", reason="pnp-bm3d needs the bm3d extra (non-commercial licence, not in dev)")
    out = tmp_path / method
    r = invoke(cli.recover_main, [meas, "--method", method, *FAST[method], "-o", out,
                                  "--reference", IMG_A, "--reference", IMG_B])
    assert r.exit_code == 0, (r.stderr, r.exception)
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"] == method and rep["m"] == 2000 and rep["n"] == 12288
    assert isinstance(rep["psnr_mean"], float)
    y, sidecar = read_measurements(meas)
    x = np.load(out / "recovered.npy", allow_pickle=False)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    op = operator_for(sidecar)
    for i, row in enumerate(rep["images"]):
        assert {"index", "psnr", "measurement_error", "objective", "seconds", "evaluations", "png"} <= set(row)
        assert (out / row["png"]).is_file()
        # the row's numbers are those of the published image (independent recomputation)
        err = np.linalg.norm((op.forward(x[i].reshape(1, -1)) - y[i]).astype(np.float64))
        assert row["measurement_error"] == pytest.approx(err, rel=1e-5)
        from gs_onnx.io.images import load_image
        assert row["psnr"] == pytest.approx(psnr(x[i], load_image([IMG_A, IMG_B][i], 64)), abs=1e-3)


def test_methods_registered_as_entry_points():
    names = {ep.name for ep in metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"deep-decoder", "iagan"} <= names
    assert set(registry.available()) == set(FAST)  # every method has a fast setting above, so the test runs them all
    for name in names:  # their traits are read without torch (the factory is imported only to make a solver)
        m = registry.method(name)
        assert isinstance(m.factory, str) and m.extra == "export" and m.name == name


@pytest.mark.parametrize("method,args,needle", [
    ("gs", ["--codes", "3"], "--codes does not apply to --method gs"),
    ("gs", ["--lam", "0.1"], "--lam does not apply"),
    ("lasso-dct", ["--cut", "1"], "--cut does not apply"),
    ("mganprior", ["--steps", "10"], "--steps does not apply"),
    ("iagan", ["--restarts", "2"], "--restarts does not apply"),
    ("deep-decoder", ["--finetune-lr", "0.1"], "--finetune-lr does not apply"),
    ("mganprior", ["--codes", "0"], "--codes must be >= 1"),
    ("mganprior", ["--cut", "0"], "cut must be in 1.."),
    ("deep-decoder", ["--channels", "0"], "--channels must be >= 1"),
    ("iagan", ["--lr", "0"], "--lr must be > 0"),
    ("iagan", ["--finetune-steps", "-1"], "--finetune-steps must be >= 0"),
    ("iagan", ["--init", "bogus"], "unknown --init"),
    ("gs", ["--cut", "9"], "cut"),
    ("lasso-dct", ["--batch", "restarts"], "--batch does not apply"),
    ("mganprior", ["--engine", "blocks"], "--engine does not apply"),
])
def test_bad_method_options_one_line(tmp_path, meas, method, args, needle):
    r = invoke(cli.recover_main, [meas, "--method", method, *args, "-o", tmp_path / "out"])
    assert_one_line_error(r, needle)
    assert not (tmp_path / "out").exists()


def test_method_without_torch_is_one_line(tmp_path, meas, monkeypatch):
    import dataclasses

    real = registry.method("iagan")

    class Broken:
        name = "iagan"

        def load(self):
            raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(registry, "plugins", lambda: {"iagan": Broken()})
    r = invoke(cli.recover_main, [meas, "--method", "iagan", "-o", tmp_path / "out"])
    assert_one_line_error(r, "--method iagan: its package does not load", "No module named 'torch'")
    # traits readable, the factory's module missing (torch not installed): the extra is named
    monkeypatch.setattr(registry, "plugins", lambda: {"iagan": type("EP", (), {
        "name": "iagan", "load": lambda self: dataclasses.replace(real, factory="no_such_module_here:iagan")})()})
    r = invoke(cli.recover_main, [meas, "--method", "iagan", "-o", tmp_path / "out"])
    assert_one_line_error(r, "--method iagan needs the export extra (torch)", "no_such_module_here")


# ------------------------------------------------------------------------------------------ Deep Decoder

def test_deep_decoder_size_rule():
    from gs_export.methods import DeepDecoder, dd_parameters, dd_sizes, dd_width

    assert dd_sizes(64, 64) == [(8, 8), (16, 16), (32, 32), (64, 64)]
    assert dd_sizes(128, 128)[-1] == (128, 128) and len(dd_sizes(128, 128)) == 5
    for k in (1, 7, 40):
        net = DeepDecoder(k, 3, dd_sizes(64, 64))
        assert sum(p.numel() for p in net.parameters()) == dd_parameters(k, 4, 3)
    k = dd_width(8192, 4, 3)  # DCGAN's GS latent at c = 1: 512 x 4 x 4
    assert abs(dd_parameters(k, 4, 3) - 8192) <= abs(dd_parameters(k + 1, 4, 3) - 8192)
    assert abs(dd_parameters(k, 4, 3) - 8192) <= abs(dd_parameters(k - 1, 4, 3) - 8192)


def test_deep_decoder_matches_gs_latent_and_fits_an_image(meas):
    """Width from the GS latent of the model's recommended cut; with A = I the network fits the image."""
    y, sidecar = read_measurements(meas)
    solver = make_solver("deep-decoder", y, sidecar, Settings())
    assert solver.header["matched_to"] == {"model": "dcgan-digiface", "cut": 1, "free_values": 8192}
    assert abs(solver.header["parameters"] - 8192) < 0.02 * 8192

    from gs_onnx.io.images import load_image
    x = load_image(IMG_A, 64)
    ident = {**sidecar, "operator": {"type": "identity", "n": 12288}, "m": 12288, "operator_fingerprint": None}
    dd = make_solver("deep-decoder", x.reshape(1, -1), ident, Settings(steps=300, channels=24))
    image, row = dd.solve(0, x.reshape(-1), lambda f, w: None)
    assert psnr(image, x) > 20.0, psnr(image, x)
    again, _ = dd.solve(0, x.reshape(-1), lambda f, w: None)
    np.testing.assert_allclose(again, image, atol=1e-5)  # seeded: reproducible


# ------------------------------------------------------------------------------------------ IAGAN

def test_torch_generator_from_artifacts_matches_onnx(tiny_models):
    """The torch generator read back from the ONNX weights computes ONNX Runtime's image (BEGAN: skips)."""
    from gs_export.from_onnx import torch_generator

    for key in ("dcgan", "began", "vae"):
        man = load_manifest(tiny_models[key][1])
        gen = torch_generator(man, check=False)
        z = np.random.default_rng(4).standard_normal((3, *man.tensors["z"])).astype(np.float32)
        with torch.no_grad():
            x = gen.run({"z": torch.from_numpy(z)})["x"].numpy()
        s, b = man.to_unit()
        np.testing.assert_allclose(x * s + b, CutGenerator(man, 0, "cpu").forward({"z": z}), atol=1e-5)


def test_torch_generator_refuses_missing_weight(tiny_models):
    from gs_export.from_onnx import torch_generator

    man = load_manifest(tiny_models["dcgan"][1])
    man.raw["blocks"][1]["parameters"]["conv.weight"]["initializer"] = "renamed"
    with pytest.raises(GSError, match="block 1 graph has no weight"):
        torch_generator(man)


def test_iagan_joint_phase_lowers_the_objective(meas):
    """The weight phase starts where the latent phase ends (same seed) and must fit y better."""
    y, sidecar = read_measurements(meas)
    rows = {}
    for ft in (0, 40):
        solver = make_solver("iagan", y, sidecar, Settings(steps=60, finetune_steps=ft, finetune_lr=1e-4))
        _, rows[ft] = solver.solve(0, y[0], lambda f, w: None)
    assert rows[40]["objective"] < rows[0]["objective"]
    assert rows[40]["evaluations"] == 100


@pytest.mark.parametrize("mode", ["restarts", "images"])
def test_batched_recovery_from_the_cli(tmp_path, meas, mode):
    """--batch restarts|images: the same report, recorded with its mode, and the same recovery as one restart
    after another up to float32 rounding (every restart of both images in one lockstep batch for ``images``).
    Batched and single-row graphs round differently (tests/test_engine.py checks one evaluation to 1e-5);
    15 L-BFGS-B iterations amplify that to a few hundredths of a dB."""
    reps = {}
    for flag in ("none", mode):
        out = tmp_path / flag
        r = invoke(cli.recover_main, [meas, "--restarts", "3", "--max-iter", "15", "--batch", flag, "-o", out,
                                      "--reference", IMG_A, "--reference", IMG_B])
        assert r.exit_code == 0, r.stderr
        reps[flag] = json.loads((out / "report.json").read_text())
    assert reps[mode]["batch"] == mode and reps["none"]["batch"] == "none"
    for a, b in zip(reps["none"]["images"], reps[mode]["images"]):
        assert abs(a["psnr"] - b["psnr"]) < 0.15
        assert len(b["restarts"]) == 3
        for ra, rb in zip(a["restarts"], b["restarts"]):
            assert rb["objective"] == pytest.approx(ra["objective"], rel=0.05)


def test_mganprior_objective_is_per_image(meas):
    """The solver's objective is ||A x - y_i||^2 / m for the image being solved, whatever the file's size."""
    y, sidecar = read_measurements(meas)
    solver = make_solver("mganprior", y, sidecar, Settings(codes=2, restarts=1, max_iter=3))
    obj = solver.template.with_measurements(y[1])
    assert obj.m == y.shape[1] == 2000
    np.testing.assert_array_equal(obj.y[0], y[1])
    z = np.zeros(obj.layout.size)
    x = obj.image(obj.layout.unpack(z))
    r = operator_for(sidecar).forward(x.reshape(1, -1)) - y[1]
    assert obj.value(z) == pytest.approx(float((r.astype(np.float64) ** 2).sum()) / 2000, rel=1e-6)
    with pytest.raises(GSError, match="measurements have 5 values"):
        obj.with_measurements(np.zeros(5, np.float32))


def test_where_restarts_disagree_is_mapped_and_summarised(tmp_path, meas):
    """Two restarts or more: each image's restarts' images are kept, disagreement_XXX.png maps their per-pixel
    spread (a panel of compare_XXX.png too) and the report row summarises it; one restart: neither."""
    from PIL import Image

    from gs_onnx.metrics import DISAGREE_AT, disagreement
    from gs_onnx.solve.restart import recover_batch

    y, sidecar = read_measurements(meas)
    solver = make_solver("gs", y, sidecar, Settings(restarts=3, max_iter=10))
    (rec,) = recover_batch(solver.template, y[:1], restarts=3, budget=solver.budget, seeds=[0])
    assert rec.restart_images.shape == (3, 3, 64, 64)
    np.testing.assert_array_equal(rec.restart_images[rec.best_restart], rec.image)
    op = operator_for(sidecar)
    for r, im in zip(rec.restarts, rec.restart_images):  # each image is its restart's (independent residual)
        err = np.linalg.norm((op.forward(im.reshape(1, -1)) - y[0]).astype(np.float64))
        assert r.measurement_error == pytest.approx(err, rel=1e-4)
    m, s = disagreement(rec.restart_images)
    want = rec.restart_images.astype(np.float64).std(axis=0).mean(axis=0)
    np.testing.assert_allclose(m, want, rtol=1e-5, atol=1e-7)
    assert s["invented"] == pytest.approx((want > DISAGREE_AT).mean(), abs=1e-4) and s["restarts"] == 3

    for k in (3, 1):
        out = tmp_path / f"r{k}"
        r = invoke(cli.recover_main, [meas, "--method", "gs", "--restarts", k, "--max-iter", "10", "-o", out,
                                      "--reference", IMG_A, "--reference", IMG_B])
        assert r.exit_code == 0, r.stderr
        rows = json.loads((out / "report.json").read_text())["images"]
        if k == 1:
            assert all("disagreement" not in row for row in rows) and not list(out.glob("disagreement_*"))
            continue
        assert "restarts differ on" in r.stdout
        for row in rows:
            d = row["disagreement"]
            assert d["restarts"] == 3 and 0 <= d["invented"] <= 1 and 0 <= d["mean"] <= d["p95"] + 1e-9
            assert Image.open(out / row["disagreement_png"]).size == (64, 64)
    one, three = (Image.open(tmp_path / f"r{k}" / "compare_001.png").size[0] for k in (1, 3))
    assert three > one                                            # the map is a panel of the comparison
