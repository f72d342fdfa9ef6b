"""The sliding-window DCT denoiser (gs_onnx.engine.dct_denoiser) against independent truths: scipy's DCT on every
patch, summed by loops (the definition, not the graph's grouped convolutions); the identity at noise level 0 (every
coefficient kept: the patches put back are the patches); a flat image stays flat; and ``--method pnp-dct`` recovers
a face from a mask better than the measured pixels alone."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dctn, idctn

from gs_onnx.engine.dct_denoiser import OPPONENT, PATCH, THRESHOLD, DCTDenoiser
from gs_onnx.errors import GSError


def reference(img: np.ndarray, sigma: float, thr: float = THRESHOLD, p: int = PATCH, wiener: bool = True) -> np.ndarray:
    """Yu and Sapiro's algorithm written out: opponent colours, every p x p patch of the mirrored image, orthonormal
    DCT, hard threshold (the mean kept), inverse, aggregated with weights 1 / (1 + coefficients kept); then
    (``wiener``) BM3D's second step on the same patches: each noisy coefficient times p^2 / (p^2 + sigma^2), p the
    stage-1 image's coefficient (the mean kept), aggregated with weights 1 / sum(shrink^2)."""
    C, H, W = img.shape
    o = np.tensordot(OPPONENT, img.astype(np.float64), axes=1)
    scale = np.sqrt((OPPONENT ** 2).sum(axis=1))
    out = np.empty_like(o)
    for c in range(C):
        ch = np.pad(o[c], p - 1, mode="reflect")
        acc, wsum = np.zeros_like(ch), np.zeros_like(ch)
        for i in range(ch.shape[0] - p + 1):
            for j in range(ch.shape[1] - p + 1):
                v = dctn(ch[i:i + p, j:j + p], norm="ortho")
                keep = np.abs(v) > thr * scale[c] * sigma
                keep[0, 0] = True
                w = 1.0 / (1.0 + keep.sum())
                acc[i:i + p, j:j + p] += w * idctn(v * keep, norm="ortho")
                wsum[i:i + p, j:j + p] += w
        out[c] = (acc / wsum)[p - 1:p - 1 + H, p - 1:p - 1 + W]
        if not wiener:
            continue
        pilot = np.pad(out[c], p - 1, mode="reflect")
        acc, wsum = np.zeros_like(ch), np.zeros_like(ch)
        for i in range(ch.shape[0] - p + 1):
            for j in range(ch.shape[1] - p + 1):
                v = dctn(ch[i:i + p, j:j + p], norm="ortho")
                pv2 = dctn(pilot[i:i + p, j:j + p], norm="ortho") ** 2
                shrink = pv2 / (pv2 + (scale[c] * sigma) ** 2 + 1e-20)
                shrink[0, 0] = 1.0
                w = 1.0 / (shrink ** 2).sum()
                acc[i:i + p, j:j + p] += w * idctn(v * shrink, norm="ortho")
                wsum[i:i + p, j:j + p] += w
        out[c] = (acc / wsum)[p - 1:p - 1 + H, p - 1:p - 1 + W]
    return np.tensordot(np.linalg.inv(OPPONENT), out, axes=1)


@pytest.fixture(scope="module")
def den():
    return DCTDenoiser(device="cpu", threads=1)


@pytest.mark.parametrize("wiener", [True, False])
def test_the_graph_is_the_algorithm(den, wiener):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 3, 13, 17)).astype(np.float32)
    sig = np.array([0.08, 0.02], np.float32)
    out = (den if wiener else DCTDenoiser(device="cpu", threads=1, wiener=False))(x, sig)
    for b in range(2):
        np.testing.assert_allclose(out[b], reference(x[b], float(sig[b]), wiener=wiener), atol=2e-5)


def test_at_noise_level_zero_it_is_the_identity(den):
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(den(x, 0.0), x, atol=1e-5)


def test_noise_is_removed_and_a_flat_image_stays_flat(den):
    rng = np.random.default_rng(2)
    flat = np.full((1, 3, 32, 32), 0.4, np.float32)
    noisy = flat + 0.05 * rng.standard_normal(flat.shape).astype(np.float32)
    out = den(noisy, 0.05)
    assert np.sqrt(np.mean((out - flat) ** 2)) < 0.2 * np.sqrt(np.mean((noisy - flat) ** 2))


@pytest.mark.parametrize("shape,sigma,needle", [((1, 2, 16, 16), 0.1, "(B, 3, H, W)"), ((1, 3, 6, 16), 0.1, "H, W >= 8"),
                                                ((1, 3, 16, 16), -1.0, "finite and >= 0")])
def test_bad_input_is_refused(den, shape, sigma, needle):
    with pytest.raises(GSError, match=r".*" + needle.replace("(", r"\(").replace(")", r"\)")):
        den(np.zeros(shape, np.float32), sigma)


def test_pnp_dct_inpaints_a_face(tmp_path):
    from gs_onnx.io.images import load_image
    from gs_onnx.metrics import psnr
    from gs_onnx.physics import Mask, measure
    from gs_onnx.solve import Settings, make_solver
    from test_cli import IMG_A

    x = load_image(IMG_A, 64)
    op = Mask((3, 64, 64), keep=0.3, seed=0)
    y = measure(x.reshape(1, -1), op, 0.01, 0)
    sidecar = {"operator": op.describe(), "image_shape": [3, 64, 64], "m": op.m, "n": op.n, "sigma": 0.01}
    image, fields = make_solver("pnp-dct", y, sidecar, Settings(device="cpu")).solve(0, y[0], lambda f, w: None)
    measured_only = op.adjoint(y).reshape(3, 64, 64)       # the kept pixels, zeros elsewhere
    assert psnr(image, x) > psnr(measured_only, x) + 10 and psnr(image, x) > 24
    assert fields["held_out"] is not None
