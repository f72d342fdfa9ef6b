"""Measurement operators: adjointness, determinism, entry statistics, memory refusal, descriptions."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gs_onnx.physics import cs as opmod
from gs_onnx.errors import GSError
from gs_onnx.physics import (
    ROWS_PER_BLOCK,
    GaussianOperator,
    IdentityOperator,
    Operator,
    available_memory_bytes,
    dense_bytes,
    from_description as operator_from_description,
)

RNG = np.random.default_rng(12345)


def _adjoint_gap(op: Operator, batch: int = 3) -> tuple[float, float]:
    """|<A x, y> - <x, A^T y>| and the scale sum |A x * y| it is measured against (float64)."""
    x = RNG.standard_normal((batch, op.n)).astype(np.float32)
    y = RNG.standard_normal((batch, op.m)).astype(np.float32)
    ax, aty = op.forward(x).astype(np.float64), op.adjoint(y).astype(np.float64)
    lhs = float(np.sum(ax * y))
    rhs = float(np.sum(x.astype(np.float64) * aty))
    return abs(lhs - rhs), float(np.sum(np.abs(ax * y)))


@pytest.mark.parametrize("m,n", [(1, 7), (100, 300), (257, 64), (600, 1000)])
def test_gaussian_adjoint_identity(m, n):
    op = GaussianOperator(m, n, seed=3)
    gap, scale = _adjoint_gap(op)
    assert gap <= 1e-5 * scale


def test_identity_adjoint_identity_and_values():
    op = IdentityOperator(50)
    assert op.m == op.n == 50 and op.nbytes == 0
    x = RNG.standard_normal((2, 50)).astype(np.float32)
    fx = op.forward(x)
    assert fx.dtype == np.float32 and np.array_equal(fx, x)
    assert fx is not x
    assert np.array_equal(op.adjoint(x), x)
    gap, scale = _adjoint_gap(op)
    assert gap <= 1e-6 * scale


def test_forward_adjoint_match_float64_matmul():
    op = GaussianOperator(200, 300, seed=1)
    a = op.matrix().astype(np.float64)
    x = RNG.random((4, 300)).astype(np.float32)
    y = RNG.standard_normal((4, 200)).astype(np.float32)
    fx, ay = op.forward(x), op.adjoint(y)
    assert fx.shape == (4, 200) and fx.dtype == np.float32
    assert ay.shape == (4, 300) and ay.dtype == np.float32
    np.testing.assert_allclose(fx, x.astype(np.float64) @ a.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ay, y.astype(np.float64) @ a, rtol=1e-4, atol=1e-5)


def test_shape_errors_are_gserrors():
    op = GaussianOperator(10, 20, seed=0)
    with pytest.raises(GSError):
        op.forward(np.zeros((2, 21), np.float32))
    with pytest.raises(GSError):
        op.adjoint(np.zeros(10, np.float32))
    with pytest.raises(GSError):
        IdentityOperator(5).forward(np.zeros((1, 4), np.float32))


def test_matrix_is_deterministic_and_bit_identical():
    a1 = GaussianOperator(300, 50, seed=7).matrix()
    a2 = GaussianOperator(300, 50, seed=7).matrix()
    assert a1.dtype == np.float32 and a1.shape == (300, 50)
    assert np.array_equal(a1.view(np.uint32), a2.view(np.uint32))
    assert not np.array_equal(a1, GaussianOperator(300, 50, seed=8).matrix())


def test_golden_values():
    # Bit patterns of a few entries of (m=300, n=50, seed=7). If this fails, numpy's PCG64 /
    # standard_normal stream changed and saved measurement files no longer reproduce their A.
    a = GaussianOperator(300, 50, seed=7).matrix()
    assert a[0, :3].view(np.uint32).tolist() == [1035204013, 3179759573, 1032322852]
    assert a[299, -2:].view(np.uint32).tolist() == [1006749632, 3185985904]


def test_format_definition_block_by_block():
    # Independent restatement of the format: block j from SeedSequence([seed, j]), 256 rows, / sqrt(m).
    m, n, seed = 600, 40, 11
    a = GaussianOperator(m, n, seed).matrix()
    for j, start in enumerate(range(0, m, ROWS_PER_BLOCK)):
        rows = min(ROWS_PER_BLOCK, m - start)
        g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, j])))
        want = g.standard_normal((rows, n), dtype=np.float32) / np.float32(math.sqrt(m))
        assert np.array_equal(a[start : start + rows], want)


@pytest.mark.parametrize("chunk_rows", [1, 100, 256, 300, 1024, 10_000])
def test_chunking_does_not_change_matrix(chunk_rows):
    ref = GaussianOperator(700, 30, seed=5).matrix()
    assert np.array_equal(GaussianOperator(700, 30, seed=5, chunk_rows=chunk_rows).matrix(), ref)


def test_row_ranges_reproduce_matrix():
    op = GaussianOperator(700, 30, seed=5)
    ref = op.matrix()
    cuts = [0, 1, 255, 256, 257, 300, 512, 699, 700]
    parts = [op.rows(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    assert np.array_equal(np.concatenate(parts), ref)
    assert op.rows(10, 10).shape == (0, 30)
    with pytest.raises(GSError):
        op.rows(0, 701)


def test_prefix_rows_shared_across_m_only_through_scale():
    # Changing m rescales and extends A; it is not a different random stream for the shared blocks.
    a = GaussianOperator(300, 20, seed=2).matrix()
    b = GaussianOperator(500, 20, seed=2).matrix()
    np.testing.assert_allclose(a * math.sqrt(300), b[:300] * math.sqrt(500), rtol=1e-6)


def test_entry_statistics():
    m, n = 2000, 3000
    a = GaussianOperator(m, n, seed=0).matrix().astype(np.float64)
    count = m * n
    # mean: std of the sample mean is sqrt(1/m / count) ~ 9e-6; allow ~5 sigma.
    assert abs(a.mean()) < 5 * math.sqrt(1 / m / count)
    # variance: relative std of the sample variance is sqrt(2 / count) ~ 6e-4; allow 1%.
    assert a.var() == pytest.approx(1 / m, rel=1e-2)
    z = a * math.sqrt(m)
    assert np.mean(np.abs(z) < 1) == pytest.approx(0.682689, abs=3e-3)
    assert np.mean(z**4) == pytest.approx(3.0, rel=2e-2)  # Gaussian kurtosis
    # rows from different blocks are uncorrelated (not a repeated stream)
    r = np.corrcoef(z[0], z[ROWS_PER_BLOCK])[0, 1]
    assert abs(r) < 0.1
    # columns have squared norm ~1 (E||A e_i||^2 = 1)
    assert np.mean(np.sum(a**2, axis=0)) == pytest.approx(1.0, rel=1e-2)


def test_nbytes_and_dense_bytes():
    assert dense_bytes(2000, 3000) == 24_000_000
    assert GaussianOperator(10, 20, seed=0).nbytes == 800
    assert available_memory_bytes() >= 0


def test_memory_refusal_with_max_bytes():
    with pytest.raises(GSError) as e:
        GaussianOperator(2000, 12288, seed=0, max_bytes=1000)
    msg = str(e.value)
    assert "\n" not in msg and "0.10 GB" in msg and "max_bytes" in msg


def test_memory_refusal_from_available_memory(monkeypatch):
    monkeypatch.setattr(opmod, "available_memory_bytes", lambda: 2 * 10**9)
    GaussianOperator(1000, 1000, seed=0)  # 4 MB fits
    with pytest.raises(GSError) as e:
        GaussianOperator(20000, 49152, seed=0)  # 3.9 GB > 80% of 2 GB
    msg = str(e.value)
    assert "\n" not in msg and "3.93 GB" in msg and "2.00 GB" in msg


def test_memory_refusal_before_allocation_for_huge_matrix():
    # ~4 TB: must be refused up front, never attempted.
    with pytest.raises(GSError, match="GB"):
        GaussianOperator(10**6, 10**6, seed=0)


def test_bad_parameters():
    for args in [(0, 5, 0), (5, 0, 0), (5, 5, -1), (5.0, 5, 0), (True, 5, 0)]:
        with pytest.raises(GSError):
            GaussianOperator(*args)
    with pytest.raises(GSError):
        IdentityOperator(0)


def test_describe_is_json_and_round_trips():
    op = GaussianOperator(300, 50, seed=9)
    d = json.loads(json.dumps(op.describe()))
    assert d["type"] == "gaussian" and d["m"] == 300 and d["n"] == 50 and d["seed"] == 9
    assert d["dtype"] == "float32" and d["entries"] == "N(0,1/m)" and d["rows_per_block"] == 256
    assert "PCG64" in d["rng"] and "256" in d["rng"]
    op2 = operator_from_description(d)
    assert isinstance(op2, GaussianOperator)
    assert np.array_equal(op2.matrix(), op.matrix())

    ident = operator_from_description(json.loads(json.dumps(IdentityOperator(12).describe())))
    assert isinstance(ident, IdentityOperator) and ident.n == 12


def test_operator_from_description_passes_max_bytes():
    d = GaussianOperator(300, 50, seed=9).describe()
    with pytest.raises(GSError, match="GB"):
        operator_from_description(d, max_bytes=10)


@pytest.mark.parametrize(
    "d",
    [
        {"type": "fourier", "m": 3, "n": 3},
        {"m": 3, "n": 3, "seed": 0},
        {"type": "gaussian", "n": 3, "seed": 0},
        {"type": "gaussian", "m": 3, "n": 3},
        {"type": "gaussian", "m": 3, "n": 3, "seed": -1},
        {"type": "gaussian", "m": "3", "n": 3, "seed": 0},
        {"type": "gaussian", "m": 3.0, "n": 3, "seed": 0},
        {"type": "gaussian", "m": True, "n": 3, "seed": 0},
        {"type": "gaussian", "m": 3, "n": 3, "seed": 0, "rows_per_block": 128},
        {"type": "gaussian", "m": 3, "n": 3, "seed": 0, "dtype": "float64"},
        {"type": "gaussian", "m": 3, "n": 3, "seed": 0, "entries": "N(0,1)"},
        {"type": "identity", "m": 3, "n": 4},
        {"type": "identity"},
        ["gaussian"],
        None,
    ],
)
def test_bad_descriptions(d):
    with pytest.raises(GSError) as e:
        operator_from_description(d)
    assert "\n" not in str(e.value)


def test_streamed_gaussian_equals_dense():
    """Chunked application (never holding A) gives the dense matrix's products."""
    from gs_onnx.physics import GaussianOperator

    dense = GaussianOperator(700, 500, seed=3)
    streamed = GaussianOperator(700, 500, seed=3, chunk_rows=256, stream=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 500)).astype(np.float32)
    r = rng.standard_normal((3, 700)).astype(np.float32)
    np.testing.assert_allclose(streamed.forward(x), dense.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(streamed.adjoint(r), dense.adjoint(r), rtol=1e-5, atol=1e-4)
    assert streamed._matrix is None


def test_streamed_gaussian_skips_the_dense_memory_check(monkeypatch):
    from gs_onnx.physics import cs as opmod

    monkeypatch.setattr(opmod, "available_memory_bytes", lambda: 1_000_000)
    with pytest.raises(GSError, match="GB"):
        opmod.GaussianOperator(2000, 12288, seed=0)
    op = opmod.GaussianOperator(2000, 12288, seed=0, stream=True)
    assert op.forward(np.ones((1, 12288), np.float32)).shape == (1, 2000)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_data_fit_in_one_pass_equals_the_float64_data_term(stream, batch, weighted):
    """The one-pass data term (a block of A's rows gives its part of A x - y and of A^T dr) against the
    formulas in float64 with the dense matrix; batches above FUSED_MAX_ROWS take two passes, streamed
    matrices always one."""
    from gs_onnx.physics import datafit

    op = GaussianOperator(700, 300, seed=4, stream=stream, chunk_rows=256)  # streamed: 3 generated chunks
    if not stream:  # 700 rows in blocks of 128: five full blocks and a rest
        blocks = op.row_blocks
        op.row_blocks = lambda: blocks(128)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 300)).astype(np.float32)
    y = rng.standard_normal((1, 700)).astype(np.float32)     # one measurement vector for every row
    w = (rng.random((batch, 700)) < 0.8).astype(np.float32) if weighted else None
    one_pass = stream or batch <= datafit.FUSED_MAX_ROWS
    if one_pass:  # the one-pass path never applies A or A^T as a whole
        op._forward = op._adjoint = None
    f, held, g = datafit.data_fit(op, x, y, w)
    A = GaussianOperator(700, 300, seed=4).matrix().astype(np.float64)
    r = x.astype(np.float64) @ A.T - y
    wd = np.ones_like(r) if w is None else w.astype(np.float64)
    sw = wd.sum(axis=1)
    np.testing.assert_allclose(f, (wd * r * r).sum(axis=1) / sw, rtol=1e-5)
    if weighted:
        np.testing.assert_allclose(held, ((1 - wd) * r * r).sum(axis=1) / (1 - wd).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(g, (2 * wd / sw[:, None] * r) @ A, rtol=1e-4, atol=1e-6 * np.abs(g).max())
    assert g.dtype == np.float32 and g.shape == (batch, 300)
    if stream:
        assert op._matrix is None
