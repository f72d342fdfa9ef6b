"""The subsampled randomized DCT operator against independent truths: the adjoint identity, orthogonal
rows, an explicit DCT matrix, its description, and whole measure -> recover runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.fft import dct

from gs_onnx import cli
from gs_onnx.errors import GSError
from gs_onnx.physics import SubsampledDCTOperator, make_operator
from gs_onnx.physics import from_description as operator_from_description

from test_cli import IMG_A, assert_one_line_error, invoke


@pytest.mark.parametrize("m,n", [(1, 7), (30, 97), (200, 768), (768, 768)])
def test_adjoint_identity(m, n):
    A = SubsampledDCTOperator(m, n, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, n)).astype(np.float32)
    y = rng.standard_normal((4, m)).astype(np.float32)
    lhs = (A.forward(x).astype(np.float64) * y).sum(axis=1)
    rhs = (x * A.adjoint(y).astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4 * np.abs(lhs).max())


def test_matches_explicit_matrix_and_has_orthogonal_rows():
    m, n = 40, 96
    A = SubsampledDCTOperator(m, n, seed=5)
    # the orthonormal DCT-II matrix, built from its definition
    k, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    C = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * j + 1) * k / (2 * n))
    C[0] /= np.sqrt(2.0)
    explicit = np.sqrt(n / m) * C[A.rows] * A.signs[None].astype(np.float64)
    np.testing.assert_allclose(A.matrix(), explicit, atol=1e-5)
    x = np.random.default_rng(1).standard_normal((3, n)).astype(np.float32)
    np.testing.assert_allclose(A.forward(x), x @ explicit.T, atol=1e-4)
    np.testing.assert_allclose(explicit @ explicit.T, (n / m) * np.eye(m), atol=1e-10)
    assert set(np.unique(A.signs)) == {-1.0, 1.0}
    assert len(set(A.rows.tolist())) == m and np.all(np.diff(A.rows) > 0)


def test_scaled_like_gaussian():
    """E ||A x||^2 = ||x||^2, as for N(0, 1/m) entries (averaged over many x)."""
    A = SubsampledDCTOperator(1000, 12288, seed=0)
    x = np.random.default_rng(2).standard_normal((64, 12288)).astype(np.float32)
    ratio = (A.forward(x) ** 2).sum() / (x ** 2).sum()
    assert ratio == pytest.approx(1.0, rel=0.05)
    assert dct  # scipy.fft is the transform


def test_description_round_trip_and_seed():
    A = SubsampledDCTOperator(50, 300, seed=7)
    B = operator_from_description(json.loads(json.dumps(A.describe())))
    np.testing.assert_array_equal(A.matrix(), B.matrix())
    C = SubsampledDCTOperator(50, 300, seed=8)
    assert not np.array_equal(A.rows, C.rows) or not np.array_equal(A.signs, C.signs)
    assert A.nbytes < 300 * 16
    assert isinstance(make_operator("srdct", 5, 10, 0), SubsampledDCTOperator)
    with pytest.raises(GSError, match="builds gaussian or srdct"):
        make_operator("fourier", 5, 10, 0)
    with pytest.raises(GSError, match="m <= n"):
        SubsampledDCTOperator(11, 10, 0)
    with pytest.raises(GSError, match="must be an integer"):
        SubsampledDCTOperator(0, 10, 0)


def test_measure_and_recover_with_srdct(tmp_path):
    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--ratio", "0.1628", "--operator", "srdct", "-o", meas])
    assert r.exit_code == 0, r.stderr
    side = json.loads(meas.with_suffix(".json").read_text())
    assert side["operator"]["type"] == "srdct" and side["operator"]["m"] == 2000
    for method, extra in (("gs", ["--restarts", "1", "--max-iter", "30"]), ("lasso-dct", ["--max-iter", "400"])):
        out = tmp_path / method
        r = invoke(cli.recover_main, [meas, "--method", method, *extra, "-o", out, "--reference", IMG_A])
        assert r.exit_code == 0, (r.stderr, r.exception)
        rep = json.loads((out / "report.json").read_text())
        assert rep["operator"]["type"] == "srdct" and rep["images"][0]["psnr"] > 15


def test_measure_unknown_operator_one_line(tmp_path):
    r = invoke(cli.measure_main, [IMG_A, "--ratio", "0.1", "--operator", "fourier", "-o", tmp_path / "m.npy"])
    assert_one_line_error(r, "--operator")
