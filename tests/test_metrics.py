"""PSNR on clamped reconstructions, and mean/std over images."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gs_onnx.metrics import batch_psnr, mean_std, psnr


def test_uniform_error_known_values():
    x = np.full((3, 8, 8), 0.5)
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-9)
    assert psnr(x - 0.01, x) == pytest.approx(40.0, abs=1e-9)
    assert psnr(x + 0.1, x, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2), abs=1e-9)


def test_matches_definition_on_random_images():
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16))
    x_hat = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    mse = np.mean((x_hat - x) ** 2)
    assert psnr(x_hat, x) == pytest.approx(-10 * math.log10(mse), rel=1e-12)
    assert isinstance(psnr(x_hat.astype(np.float32), x.astype(np.float32)), float)


def test_identical_is_inf():
    x = np.random.default_rng(1).random((3, 4, 4))
    assert psnr(x, x) == float("inf")


def test_clamping_applies_to_reconstruction_only():
    x = np.full((2, 5), 0.9)
    # 1.5 clamps to 1.0: error 0.1 -> 20 dB (without clamping it would be 0.6 -> ~4.4 dB)
    assert psnr(np.full_like(x, 1.5), x) == pytest.approx(20.0, abs=1e-9)
    assert psnr(np.full_like(x, 1.5), np.ones_like(x)) == float("inf")
    assert psnr(np.full_like(x, -3.0), np.full_like(x, 0.1)) == pytest.approx(20.0, abs=1e-9)


def test_shape_mismatch_and_empty():
    with pytest.raises(ValueError):
        psnr(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError):
        psnr(np.zeros(0), np.zeros(0))


def test_batch_psnr_is_per_image():
    x = np.full((3, 3, 4, 4), 0.5)
    x_hat = x + np.array([0.1, 0.01, 0.0])[:, None, None, None]
    got = batch_psnr(x_hat, x)
    assert got.shape == (3,)
    np.testing.assert_allclose(got[:2], [20.0, 40.0], atol=1e-9)
    assert got[2] == float("inf")
    # per image, not over the whole batch
    assert got[0] != pytest.approx(psnr(x_hat, x))


def test_mean_std():
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and std == pytest.approx(math.sqrt(2 / 3))
    assert mean_std(np.array([20.0, 22.0])) == (21.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    m, s = mean_std([20.0, float("inf")])
    assert m == float("inf") and math.isnan(s)
    with pytest.raises(ValueError):
        mean_std([])
