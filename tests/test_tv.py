"""TV, the classical prior beside Lasso-DCT (issue 28): the discrete gradient and its adjoint, the TV value on
images with known variation, known solutions, the stopping rule against a long run, batching, and the method
behind gs-recover."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gs_onnx import cli
from gs_onnx.io.images import load_image
from gs_onnx.physics import IdentityOperator, Mask, make, measure
from gs_onnx.solve.tv import GAMMA, LAM, default_lam, grad, grad_adjoint, tv, tv_batch
from conftest import SAMPLES


def test_gradient_adjoint_identity():
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(2, 3, 7, 9)), rng.normal(size=(2, 2, 3, 7, 9))
    assert (grad(x) * q).sum() == pytest.approx((x * grad_adjoint(q)).sum(), rel=1e-12)


def test_tv_of_known_images():
    flat = np.full((1, 3, 8, 8), 0.3)
    step = np.zeros((1, 1, 8, 8)); step[..., 4:] = 1.0     # a vertical edge of height 8, jump 1
    ramp = np.tile(np.arange(8.0) / 10, (1, 1, 8, 1))       # 7 horizontal steps of 0.1 in each of 8 rows
    assert tv(flat)[0] == 0.0
    assert tv(step)[0] == pytest.approx(8.0)
    assert tv(ramp)[0] == pytest.approx(8 * 7 * 0.1)


def test_without_weight_denoising_returns_the_measurements():
    """lam = 0, A = I: the minimiser of ||x - y||^2 over the box is y itself (y inside [0, 1])."""
    shape = (3, 16, 16)
    y = np.random.default_rng(1).uniform(0.1, 0.9, (1, int(np.prod(shape)))).astype(np.float32)
    (res,) = tv_batch(IdentityOperator(shape), y, shape, lam=0.0, tol=1e-7, max_iter=3000)
    np.testing.assert_allclose(res.image.reshape(1, -1), y, atol=1e-4)


def test_the_stopping_rule_stops_near_the_optimum():
    """On a real face with 30 % of the pixels kept (the physics preset's condition): the default stop is within
    0.5 % of the objective of a run six times longer with no stopping rule, and the image within 0.1 dB."""
    from gs_onnx.metrics import psnr

    x = load_image(SAMPLES / "celeba64_182640.jpg", 64)
    A = make("mask", x.shape, 0, keep=0.3)
    y = measure(x.reshape(1, -1), A, 0.01, seed=0)
    (fast,) = tv_batch(A, y, x.shape, default_lam("mask"))
    (long,) = tv_batch(A, y, x.shape, default_lam("mask"), tol=0.0, max_iter=6 * max(fast.iterations, 100))
    assert fast.converged and fast.iterations < 1000
    assert fast.objective <= long.objective * 1.005
    assert abs(psnr(fast.image, x) - psnr(long.image, x)) < 0.1


def test_images_solved_together_are_those_solved_alone():
    xs = np.stack([load_image(SAMPLES / f"celeba64_18263{k}.jpg", 64) for k in (8, 9)])
    A = make("downsample", xs[0].shape, 0, factor=4)
    Y = measure(xs.reshape(2, -1), A, 0.01, seed=0)
    both = tv_batch(A, Y, xs[0].shape, 0.003)
    for k in range(2):
        (alone,) = tv_batch(A, Y[k:k + 1], xs[0].shape, 0.003)
        assert alone.iterations == both[k].iterations
        np.testing.assert_allclose(alone.image, both[k].image, atol=1e-5)


def test_every_measuring_operator_has_a_chosen_weight():
    from gs_onnx.physics import measuring_types

    assert set(measuring_types()) <= set(LAM)
    assert all(v > 0 for v in LAM.values())


def test_gs_recover_method_tv(tmp_path):
    from test_cli import assert_one_line_error, invoke

    img = SAMPLES / "celeba64_182638.jpg"
    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [img, "--model", "dcgan", "--operator", "mask", "--keep", "0.3", "-o", meas])
    assert r.exit_code == 0, r.output
    r = invoke(cli.recover_main, [meas, "--method", "tv", "--reference", img])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "m-recovered-tv" / "report.json").read_text())
    assert rep["method"] == "tv" and rep["lam"] == LAM["mask"] and rep["images"][0]["psnr"] > 24
    assert rep["images"][0]["converged"] is True
    r = invoke(cli.recover_main, [meas, "--method", "tv", "--lam", "0.5", "-o", tmp_path / "b"])
    assert r.exit_code == 0 and json.loads((tmp_path / "b" / "report.json").read_text())["lam"] == 0.5
    assert_one_line_error(invoke(cli.recover_main, [meas, "--method", "tv", "--skip-prior", "0.1", "-o", tmp_path / "c"]),
                          "--skip-prior does not apply to --method tv")


def test_anchored_tv_without_weight_is_the_closed_form():
    """lam = 0, A = I: min ||x - y||^2 + gamma ||x - G||^2 is x = (y + gamma G) / (1 + gamma) (inside the box)."""
    shape = (3, 16, 16)
    rng = np.random.default_rng(3)
    y = rng.uniform(0.1, 0.9, (2, int(np.prod(shape)))).astype(np.float32)
    G = rng.uniform(0.1, 0.9, (2, *shape)).astype(np.float32)
    res = tv_batch(IdentityOperator(shape), y, shape, lam=0.0, anchor=G, gamma=0.5, tol=1e-9, max_iter=3000)
    for r, yy, g in zip(res, y, G):
        np.testing.assert_allclose(r.image, (yy.reshape(shape) + 0.5 * g) / 1.5, atol=1e-4)


def test_deviation_form_keeps_the_base_where_the_measurements_say_nothing():
    """TV of the deviation from a base image: pixels no measurement sees keep the base's values."""
    shape = (1, 16, 16)
    x = np.random.default_rng(4).uniform(0.2, 0.8, (1, *shape)).astype(np.float32)
    A = Mask(shape, keep=0.5, seed=1)
    (res,) = tv_batch(A, A.forward(x.reshape(1, -1)), shape, lam=0.05, base=x)
    np.testing.assert_allclose(res.image, x[0], atol=1e-3)


def test_gs_recover_method_gs_tv(tmp_path):
    """gs-tv: the gs recovery (same plan) refined by TV anchored to it; the report keeps both errors."""
    from gs_onnx.solve.tv import GAMMA
    from test_cli import invoke

    img = SAMPLES / "celeba64_182639.jpg"
    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [img, "--model", "dcgan", "--operator", "fourier", "--keep", "0.25", "-o", meas])
    assert r.exit_code == 0, r.output
    for method in ("gs", "gs-tv"):
        r = invoke(cli.recover_main, [meas, "--method", method, "--max-iter", "30", "--reference", img])
        assert r.exit_code == 0, r.output
    gs = json.loads((tmp_path / "m-recovered" / "report.json").read_text())
    both = json.loads((tmp_path / "m-recovered-gs-tv" / "report.json").read_text())
    assert both["tv"] == {"lam": LAM["fourier"], "gamma": GAMMA["fourier"], "max_iter": 1000}
    row, g = both["images"][0], gs["images"][0]
    assert row["gs_measurement_error"] == pytest.approx(g["measurement_error"], rel=1e-6)   # the same gs run
    assert row["tv"]["converged"] and row["measurement_error"] < row["gs_measurement_error"]


def _dcgan_copy(tmp_path, **recommended):
    """A copy of the shipped dcgan whose manifest's ``recommended`` section is updated with ``recommended``."""
    import shutil

    from gs_onnx.generator.registry import load

    dst = tmp_path / "dcgan-copy"
    shutil.copytree(load("dcgan").root, dst)
    d = json.loads((dst / "manifest.json").read_text())
    d["recommended"].update(recommended)
    (dst / "manifest.json").write_text(json.dumps(d))
    return dst


def test_gs_recover_runs_the_models_recommended_method_by_default(tmp_path):
    """--method auto (the default): the manifest's recommended method for the operator type, its own gs-tv weights,
    the choice said on stderr and in report.json; a flag of another method is refused naming the choice."""
    from test_cli import assert_one_line_error, invoke

    model = _dcgan_copy(tmp_path, method={"default": "gs-tv", "per_operator": {"mask": "gs"}},
                        gs_tv={"gamma": {"fourier": 0.5}, "lam": {"fourier": 0.002}})
    img = SAMPLES / "celeba64_182639.jpg"
    reports = {}
    for kind, extra in (("fourier", ["--keep", "0.25"]), ("mask", ["--keep", "0.3"])):
        meas = tmp_path / f"{kind}.npy"
        r = invoke(cli.measure_main, [img, "--model", model, "--operator", kind, *extra, "-o", meas])
        assert r.exit_code == 0, r.output
        r = invoke(cli.recover_main, [meas, "--model", model, "--max-iter", "5", "--quiet"])
        assert r.exit_code == 0, r.output
        reports[kind] = json.loads((tmp_path / f"{kind}-recovered" / "report.json").read_text())
    assert reports["fourier"]["method"] == "gs-tv"
    assert reports["fourier"]["tv"] == {"lam": 0.002, "gamma": 0.5, "max_iter": 1000}   # the model's own weights
    assert "recommended method for fourier" in reports["fourier"]["method_chosen"]
    assert reports["mask"]["method"] == "gs" and "tv" not in reports["mask"]
    r = invoke(cli.recover_main, [tmp_path / "mask.npy", "--model", model, "--gamma", "0.1", "-o", tmp_path / "x"])
    assert_one_line_error(r, "--gamma does not apply to --method gs", "recommended method")
    r = invoke(cli.recover_main, [tmp_path / "mask.npy", "--model", model, "--method", "gs-tv", "--max-iter", "5",
                                  "--quiet"])
    assert r.exit_code == 0, r.output
    chosen = json.loads((tmp_path / "mask-recovered-gs-tv" / "report.json").read_text())
    assert chosen["method"] == "gs-tv" and "method_chosen" not in chosen
    assert chosen["tv"]["gamma"] == GAMMA["mask"]                 # not in the model's table: the general one


def test_the_shipped_dcgan_recommends_gs_tv_and_gs_pnp_on_the_gaussian():
    from gs_onnx.generator.registry import load
    from gs_onnx.solve.registry import recommended_method

    rec = load("dcgan").recommended
    assert all(recommended_method(rec, k) == "gs-tv" for k in ("blur", "box"))
    assert all(recommended_method(rec, k) == "gs-pnp" for k in ("gaussian", "mask", "downsample", "srdct", "fourier",
                                                                "identity"))
    assert recommended_method(load("vae").recommended, "mask") == "gs"


@pytest.mark.parametrize("key,bad,msg", [
    ("method", "gs-tv", "recommended.method must be an object"),
    ("method", {"default": 3}, "recommended.method must be an object"),
    ("method", {"default": "gs", "per_operator": {"mask": ""}}, "recommended.method must be an object"),
    ("gs_tv", {"gamma": {"mask": 0}}, "recommended.gs_tv.gamma must map operator types to numbers > 0"),
    ("gs_tv", {"lam": {"mask": -1}}, "recommended.gs_tv.lam must map operator types to numbers >= 0"),
    ("gs_tv", {"lam": [0.1]}, "recommended.gs_tv.lam must map"),
    ("gs_tv", 0.1, "recommended.gs_tv must be an object"),
])
def test_a_manifest_with_a_bad_method_or_gs_tv_weight_is_refused(tmp_path, key, bad, msg):
    from gs_onnx.errors import GSError
    from gs_onnx.generator.manifest import load_manifest

    with pytest.raises(GSError, match=msg.replace(".", r"\.")):
        load_manifest(_dcgan_copy(tmp_path, **{key: bad}))


def test_a_recommended_method_that_is_not_installed_is_one_line(tmp_path):
    from test_cli import assert_one_line_error, invoke

    model = _dcgan_copy(tmp_path, method={"default": "magic"})
    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [SAMPLES / "celeba64_182639.jpg", "--model", model, "--ratio", "0.1", "-o", meas])
    assert r.exit_code == 0, r.output
    assert_one_line_error(invoke(cli.recover_main, [meas, "--model", model]), "recommends --method 'magic'",
                          "not installed")
