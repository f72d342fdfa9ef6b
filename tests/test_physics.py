"""The physics (gs_onnx.physics): one contract test over every registered operator, independent truths for each
(numpy FFT, scipy's Gaussian filter, block means, indexing), pinned draws (bit-identical rebuilds), the torch
adapter, the composed engine with the operator in the graph and on the host, gs-measure / gs-recover with every
operator, your own operator through the protocol, and the docs/physics.md example."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gs_onnx
from gs_onnx import physics as P
from gs_onnx.errors import GSError
from gs_onnx.physics.checks import onnx_apply

from conftest import SAMPLES

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (3, 32, 32)

#: Extra settings of the registered types, beyond their defaults; the contract runs on each.
VARIANTS = {
    "gaussian": [{"m": 300}],
    "srdct": [{"m": 300}],
    "mask": [{}, {"keep": 0.05}, {"keep": 0.3, "per_value": True}],
    "box": [{}, {"box": "random", "box_size": 0.3}, {"box": "2,3,10,20"}],
    "downsample": [{}, {"factor": 2, "kernel": "gaussian"}],
    "fourier": [{}, {"keep": 0.1, "density": "uniform"}, {"keep": 0.5, "centre": 0.0}],
    "blur": [{}, {"sigma": 0.7}],
    "identity": [{}],
}


def _examples():
    out = []
    for kind in P.measuring_types():
        for params in VARIANTS.get(kind, [{}]):
            out.append(pytest.param(kind, params, id=f"{kind}-{json.dumps(params, sort_keys=True)}"))
    return out


def _make(kind, params, shape=SHAPE, seed=0):
    return P.make(kind, shape, seed, **params)


def test_every_registered_type_has_an_example():
    """A new operator gets the contract by being registered; types that are not built from parameters are
    covered below (composition, adjoint)."""
    assert set(P.measuring_types()) <= set(VARIANTS)
    assert set(P.registry()) == set(P.measuring_types()) | {"adjoint", "compose"}


@pytest.mark.parametrize("kind, params", _examples())
def test_operator_contract(kind, params):
    op = _make(kind, params)
    res = P.check_operator(op, onnx=True)  # adjoint, linearity, shapes, dtype, batch, JSON round trip, ONNX form
    assert res["adjoint_rel_err"] < 1e-6
    assert res.get("onnx_forward_err", 0) < 1e-5 and res.get("onnx_adjoint_err", 0) < 1e-5
    assert op.in_shape == SHAPE and op.m == int(np.prod(op.out_shape)) and op.n == int(np.prod(SHAPE))
    assert op.describe()["type"] == kind
    assert isinstance(op.nbytes, int) and op.nbytes >= 0
    assert op.cpu_place() in ("graph", "host")
    # rebuilt from its description: the same operator, fingerprint included
    again = P.from_description(json.loads(json.dumps(op.describe())))
    assert again.fingerprint() == op.fingerprint()
    # the dense matrix agrees with forward and adjoint
    a = op.matrix().astype(np.float64)
    x = np.random.default_rng(1).random((2, op.n), dtype=np.float32)
    np.testing.assert_allclose(x @ a.T, op.forward(x), rtol=1e-4, atol=1e-5)
    # shaped and flat batches; .H and composition with the identity
    assert op(x.reshape(2, *SHAPE)).shape == (2, *op.out_shape)
    np.testing.assert_array_equal(op.H(op(x)), op.adjoint(op.forward(x)))
    assert op.H.H is op
    y = (op @ P.IdentityOperator(SHAPE))(x)
    np.testing.assert_array_equal(y, op.forward(x))


def test_composition_and_adjoint_operators():
    A = P.Downsample(SHAPE, 2) @ P.Blur(SHAPE, 1.0)
    assert isinstance(A, P.Compose) and A.out_shape == (3, 16, 16)
    P.check_operator(A, onnx=True)
    P.check_operator(A.H, onnx=True)
    x = np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)
    np.testing.assert_allclose(A(x), P.Downsample(SHAPE, 2)(P.Blur(SHAPE, 1.0)(x)), atol=1e-6)
    with pytest.raises(GSError, match="takes"):
        P.Blur(SHAPE, 1.0) @ P.Downsample(SHAPE, 2)


# ------------------------------------------------------------------------------------ independent truths

def test_mask_and_box_keep_what_they_say():
    x = np.random.default_rng(0).random((1, *SHAPE), dtype=np.float32)
    A = P.Mask(SHAPE, keep=0.25, seed=4)
    assert A.out_shape == (3, 256)
    np.testing.assert_array_equal(A(x)[0], x[0].reshape(3, -1)[:, A.pixels])
    filled = A.preview(A(x))[0]
    kept = np.zeros(32 * 32, bool)
    kept[A.pixels] = True
    np.testing.assert_array_equal(filled.reshape(3, -1)[:, kept], x[0].reshape(3, -1)[:, kept])
    assert not filled.reshape(3, -1)[:, ~kept].any()
    B = P.Box(SHAPE, "centre", 0.5)
    assert B.box == (8, 8, 16, 16) and B.m == 3 * (32 * 32 - 16 * 16)
    assert not B.preview(B(x))[0][:, 8:24, 8:24].any()
    np.testing.assert_array_equal(B.preview(B(x))[0][:, :8], x[0][:, :8])


def test_downsample_is_the_block_mean():
    x = np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)
    want = x.reshape(2, 3, 8, 4, 8, 4).astype(np.float64).mean(axis=(3, 5))
    np.testing.assert_allclose(P.Downsample(SHAPE, 4)(x), want, atol=1e-6)
    assert P.Downsample(SHAPE, 4).preview(P.Downsample(SHAPE, 4)(x)).shape == (2, *SHAPE)


def test_blur_is_scipys_gaussian_filter_with_zero_boundary():
    from scipy.ndimage import gaussian_filter

    x = np.random.default_rng(0).random((1, *SHAPE), dtype=np.float32)
    want = np.stack([gaussian_filter(x[0, c].astype(np.float64), 2.0, mode="constant", truncate=3.0) for c in range(3)])
    np.testing.assert_allclose(P.Blur(SHAPE, 2.0)(x)[0], want, atol=1e-6)


def test_fourier_is_the_orthonormal_dft_at_the_kept_frequencies():
    x = np.random.default_rng(0).random((1, *SHAPE), dtype=np.float32)
    A = P.Fourier(SHAPE, keep=0.25, density="centre", seed=2)
    X = np.fft.fft2(x[0].astype(np.float64)).reshape(3, -1)[:, A.freqs] / 32
    np.testing.assert_allclose(A(x)[0, ..., 0], X.real, atol=1e-5)
    np.testing.assert_allclose(A(x)[0, ..., 1], X.imag, atol=1e-5)
    # all frequencies kept: A^T A = I (orthonormal), so the zero-filled inverse is the image
    full = P.Fourier(SHAPE, keep=1.0, density="uniform")
    np.testing.assert_allclose(full.preview(full(x)), x, atol=1e-5)
    # the fully sampled centre: the 25 % of the kept frequencies nearest DC are all in
    r = P.fourier.frequency_radius(32, 32)
    kc = round(0.25 * A.freqs.size)
    assert set(np.argsort(r, kind="stable")[:kc]) <= set(A.freqs.tolist())
    # variable density: more samples at low than at high frequencies
    assert np.mean(r[A.freqs] < 0.3) > np.mean(r < 0.3)


def test_draws_are_pinned():
    """The seeded draws of the operators, pinned: a change of numpy's streams or of our sampling would change
    every stored sidecar's operator (the fingerprint check would then refuse them)."""
    assert P.Mask((3, 8, 8), 0.25, seed=0).pixels.tolist() == [5, 13, 14, 17, 18, 27, 30, 32, 34, 36, 39, 43, 47,
                                                                48, 53, 61]
    assert P.Box((3, 16, 16), "random", 0.5, seed=3).box == (8, 6, 8, 8)
    f = P.Fourier((3, 32, 32), 0.25, "centre", 0.25, seed=0)
    assert hashlib.sha256(f.freqs.tobytes()).hexdigest()[:16] == "cf3a1ce40284ebd7"
    f = P.Fourier((3, 32, 32), 0.25, "uniform", seed=0)
    assert hashlib.sha256(f.freqs.tobytes()).hexdigest()[:16] == "a3ee2b12fa40b40a"
    np.testing.assert_allclose(P.Blur((3, 8, 8), 1.0).kernel,
                               [0.004433, 0.054006, 0.242036, 0.39905, 0.242036, 0.054006, 0.004433], atol=1e-6)


@pytest.mark.parametrize("kind, params, words", [
    ("mask", {"keep": 0}, "keep must be a number in (0, 1]"),
    ("mask", {"keep": 1e-9}, "keeps none"),
    ("mask", {"keep": float("nan")}, "keep must be"),
    ("box", {"box": "0,0,32,32"}, "whole image"),
    ("box", {"box": "30,30,5,5"}, "outside"),
    ("box", {"box_size": 1.0}, "box_size"),
    ("downsample", {"factor": 3}, "does not divide"),
    ("downsample", {"factor": 1}, "factor must be an integer >= 2"),
    ("downsample", {"kernel": "bicubic"}, "kernel must be"),
    ("fourier", {"keep": 2.0}, "keep"),
    ("fourier", {"density": "radial"}, "density"),
    ("fourier", {"centre": 1.0}, "centre"),
    ("blur", {"sigma": 0}, "sigma"),
    ("blur", {"sigma": 100}, "sigma"),
    ("mask", {"factor": 2}, "takes no parameter 'factor'"),
])
def test_bad_parameters_are_refused_by_name(kind, params, words):
    with pytest.raises(GSError) as e:
        _make(kind, params)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(keep=0.5), "m = "),
    (lambda d: d.update(in_shape=[3, 16, 16]), "m = "),
    (lambda d: d.pop("seed"), "lacks 'seed'"),
    (lambda d: d.update(type="warp"), "unknown operator type"),
    (lambda d: d.update(per_value="yes"), "per_value must be a bool"),
])
def test_edited_descriptions_are_refused(edit, words):
    d = P.Mask(SHAPE, 0.2, seed=1).describe()
    edit(d)
    with pytest.raises(GSError) as e:
        P.from_description(d)
    assert words in str(e.value)


# ------------------------------------------------------------------------------------------- torch adapter

@pytest.mark.parametrize("kind, params", _examples())
def test_torch_adapter_equals_the_numpy_form(kind, params):
    torch = pytest.importorskip("torch")
    from gs_export.torch_physics import TorchOperator

    op = _make(kind, params)
    T = TorchOperator(op)
    x = torch.tensor(np.random.default_rng(0).random((2, op.n), dtype=np.float32), requires_grad=True)
    y = T(x)
    np.testing.assert_allclose(y.detach().numpy(), op.forward(x.detach().numpy()), rtol=1e-5, atol=1e-5)
    g = np.random.default_rng(1).standard_normal((2, op.m)).astype(np.float32)
    (y * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), op.adjoint(g), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(T.adjoint(torch.from_numpy(g)).numpy(), op.adjoint(g), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- engine and solvers

@pytest.fixture(scope="module")
def dcgan():
    return gs_onnx.load_model("dcgan")


@pytest.mark.parametrize("kind, params", [("mask", {"keep": 0.2}), ("box", {}), ("downsample", {"factor": 4}),
                                          ("fourier", {}), ("blur", {}), ("identity", {})])
def test_composed_engine_graph_and_host_agree(dcgan, kind, params):
    """The operator inside the objective graph (its ONNX form) and on the host (numpy) give the same f and
    gradient, and both match a finite difference."""
    from gs_onnx.solve.objective import make_objective

    op = P.make(kind, dcgan.image_shape, 0, **params)
    rng = np.random.default_rng(0)
    y = op.forward(rng.random((1, op.n), dtype=np.float32))[0]
    objs = {p: make_objective(dcgan, 1, op, device="cpu", engine="composed", operator_on=p).with_measurements(y)
            for p in ("graph", "host")}
    size = objs["graph"].layout.size
    z = rng.standard_normal(size) * 0.5
    (fg, gg), (fh, gh) = (objs[p].value_and_grad(z) for p in ("graph", "host"))
    assert fg == pytest.approx(fh, rel=1e-5)
    np.testing.assert_allclose(gg, gh, rtol=1e-3, atol=1e-5 * np.abs(gg).max())
    d = gg / np.linalg.norm(gg)  # along the gradient: the largest derivative, well above float32 noise in f
    eps = 1e-2
    fd = (objs["graph"].value_and_grad(z + eps * d)[0] - objs["graph"].value_and_grad(z - eps * d)[0]) / (2 * eps)
    assert fd == pytest.approx(float(gg @ d), rel=2e-2, abs=1e-6)


def test_lasso_dct_and_mganprior_take_any_operator(dcgan):
    x = np.random.default_rng(0).random((1, dcgan.n), dtype=np.float32)
    A = P.Downsample(dcgan.image_shape, 2)
    res = gs_onnx.lasso_dct(A, A.forward(x)[0], dcgan.image_shape, max_iter=20)
    assert res.image.shape == dcgan.image_shape
    obj = gs_onnx.MultiCodeObjective(dcgan, 1, A, A.forward(x)[0], codes=2, device="cpu")
    f, g = obj.value_and_grad(np.zeros(obj.layout.size) + 0.1)
    assert np.isfinite(f) and g.shape == (obj.layout.size,)


# ------------------------------------------------------------------------------------------- your own

class Flip:
    """An operator of one's own through the protocol only (m, n, forward, adjoint): the image mirrored
    left-right, then every second row kept."""

    def __init__(self, shape):
        self.shape = shape
        c, h, w = shape
        self.n, self.m = c * h * w, c * (h // 2) * w

    def forward(self, x):
        c, h, w = self.shape
        return x.reshape(-1, c, h, w)[:, :, ::2, ::-1].reshape(len(x), -1)

    def adjoint(self, y):
        c, h, w = self.shape
        out = np.zeros((len(y), c, h, w), np.float32)
        out[:, :, ::2, ::-1] = y.reshape(-1, c, h // 2, w)
        return out.reshape(len(y), -1)


def test_your_own_operator_works_in_recover(dcgan):
    from gs_onnx.physics.base import as_operator

    own = Flip(dcgan.image_shape)
    P.check_operator(as_operator(own, dcgan.image_shape), rebuild=False)
    x = gs_onnx.CutGenerator(dcgan, 0, device="cpu")({"z": np.random.default_rng(3).standard_normal(
        (1, 100, 1, 1)).astype(np.float32)})[0].clip(0, 1)
    y = own.forward(x.reshape(1, -1))[0]
    rec = gs_onnx.recover(gs_onnx.CutGenerator(dcgan, 1, device="cpu"), own, y, restarts=1,
                          budget=gs_onnx.Budget(max_iter=100, max_fun=125))
    assert gs_onnx.psnr(rec.image, x) > 25
    with pytest.raises(GSError, match="not an operator"):
        gs_onnx.recover(gs_onnx.CutGenerator(dcgan, 1, device="cpu"), object(), y)


def test_an_own_operator_with_a_wrong_in_shape_is_refused(dcgan):
    from gs_onnx.physics.base import as_operator

    own = Flip(dcgan.image_shape)
    wrapped = as_operator(own, dcgan.image_shape)
    assert wrapped.in_shape == dcgan.image_shape  # no in_shape of its own: the generator's image shape
    own.in_shape = (3, 32, 64)  # half the values its n says
    with pytest.raises(GSError, match=r"in_shape \(3, 32, 64\) holds 6144 values but n = 12288"):
        as_operator(own, dcgan.image_shape)
    own.in_shape = (3, 64, 64)
    assert as_operator(own).in_shape == (3, 64, 64)


def test_the_docs_example_runs(tmp_path, monkeypatch):
    """docs/physics.md's "Your own operator" example, executed as written."""
    text = (ROOT / "docs" / "physics.md").read_text()
    section = text[text.index("## Your own operator"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "docs/physics.md", "exec"), ns)  # noqa: S102 - our own documentation
    assert ns["rec"].image.shape == (3, 64, 64)


# -------------------------------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("args, kind", [
    (["--operator", "mask", "--keep", "0.2"], "mask"),
    (["--operator", "mask", "--keep", "0.3", "--per-value"], "mask"),
    (["--operator", "box"], "box"),
    (["--operator", "box", "--box", "10,10,20,30"], "box"),
    (["--operator", "downsample", "--factor", "4"], "downsample"),
    (["--operator", "fourier", "--keep", "0.25", "--density", "centre"], "fourier"),
    (["--operator", "blur", "--sigma", "2"], "blur"),
    (["--operator", "identity", "--noise", "0.1"], "identity"),
    (["--operator", "srdct", "--ratio", "0.1"], "srdct"),
])
def test_gs_measure_writes_the_operator_and_a_png(tmp_path, args, kind):
    from PIL import Image

    from gs_onnx.cli import measure_main
    from gs_onnx.io.measurement import read_measurements
    from gs_onnx.physics import operator_for

    img = ROOT / "gs_onnx" / "samples" / "celeba64_182638.jpg"
    out = tmp_path / "meas.npy"
    r = CliRunner().invoke(measure_main, [str(img), "--model", "dcgan", *args, "-o", str(out)])
    assert r.exit_code == 0, r.output
    y, side = read_measurements(out)
    op = operator_for(side)
    assert op.type == kind and side["operator"]["type"] == kind
    assert side["sigma"] == (0.1 if "identity" in args else 0.01 if kind != "srdct" else side["sigma"])
    png = tmp_path / "meas_001.png"
    assert png.is_file() == (kind != "srdct")
    if png.is_file():
        assert Image.open(png).size == (64, 64)


@pytest.mark.parametrize("args, words", [
    (["--operator", "mask", "--factor", "2"], "--factor is not a parameter of --operator mask"),
    (["--operator", "mask", "--ratio", "0.2"], "--ratio/--m set the number of measurements"),
    (["--operator", "gaussian"], "needs exactly one of --ratio and --m"),
    (["--operator", "downsample", "--factor", "5"], "does not divide"),
    (["--operator", "fourier", "--density", "radial"], "density"),
    (["--operator", "box", "--box", "1,2"], "TOP,LEFT,HEIGHT,WIDTH"),
    (["--operator", "warp"], "Invalid value for '--operator'"),
])
def test_gs_measure_refuses_bad_physics_in_one_line(tmp_path, args, words):
    from gs_onnx.cli import measure_main

    img = ROOT / "gs_onnx" / "samples" / "celeba64_182638.jpg"
    r = CliRunner().invoke(measure_main, [str(img), "--model", "dcgan", *args, "-o", str(tmp_path / "m.npy")])
    assert r.exit_code != 0
    assert words in r.output, r.output
    assert not list(tmp_path.iterdir())


def test_gs_recover_rebuilds_the_operator_and_shows_the_measurement(tmp_path):
    from PIL import Image

    from gs_onnx.cli import measure_main, recover_main

    img = ROOT / "gs_onnx" / "samples" / "celeba64_182638.jpg"
    out = tmp_path / "sr.npy"
    assert CliRunner().invoke(measure_main, [str(img), "--model", "dcgan", "--operator", "downsample", "--factor",
                                             "4", "-o", str(out)]).exit_code == 0
    r = CliRunner().invoke(recover_main, [str(out), "--restarts", "1", "--max-iter", "60", "--reference", str(img),
                                          "-o", str(tmp_path / "rec"), "-q"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert rep["operator"]["type"] == "downsample" and rep["psnr_mean"] > 20
    sheet = Image.open(tmp_path / "rec" / "compare_001.png")
    two_panels = Image.open(tmp_path / "rec" / "recovered_001.png").width * 2
    assert sheet.width > two_panels  # truth | measured | recovery


def test_sidecar_with_another_image_shape_is_refused(tmp_path):
    from gs_onnx.physics import operator_for

    side = {"operator": P.Mask((3, 32, 32), 0.2).describe(), "image_shape": [3, 64, 64]}
    with pytest.raises(GSError, match="image_shape"):
        operator_for(side)


def test_experiment_presets_build_their_tasks():
    from gs_onnx.experiment.presets import Config, inpaint, physics, superres

    faces = (str(SAMPLES),)  # the bundled images: no data set outside the clone
    t = physics(Config(models=("dcgan",), images=2, restarts=1, datasets=faces, budget="paper"))
    assert {x.variant for x in t} == {"mask10", "mask30", "box", "sr4", "fourier25", "blur2", "denoise"}
    assert {x.method for x in t} == {"nogs", "gs"} and len(t) == 7 * 2 * 2
    den = next(x for x in t if x.variant == "denoise")
    assert den.operator == "identity" and den.sigma == 0.1
    inp = inpaint(Config(models=("dcgan",), images=1, restarts=1, ratios=(0.1, 0.3), datasets=faces))
    # the keep fraction is the parameter; the ratio the tasks carry is the kept pixels' m/n, rounded to whole pixels
    assert {dict(x.operator_params)["keep"] for x in inp} == {0.1, 0.3}
    assert {round(x.ratio, 2) for x in inp} == {0.1, 0.3}
    sr = superres(Config(models=("dcgan",), images=1, restarts=1, factors=(2, 4), methods=("gs",), datasets=faces))
    assert sorted(dict(x.operator_params)["factor"] for x in sr) == [2, 4]
    with pytest.raises(GSError, match="unknown condition"):
        physics(Config(models=("dcgan",), conditions=("warp",)))
    assert not re.search(r"operator_params|sigma", t[0].__class__(**{**t[0].__dict__, "operator_params": (),
                                                                     "sigma": None}).key())
