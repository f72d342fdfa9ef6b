"""Plug-and-play (gs_onnx.solve.pnp) against known truths: with an identity "denoiser" it is projected gradient
descent (the measured pixels of a mask are put in place, the others untouched); the held-out error it reports is the
held-out error of the image it returns; rows solved together are rows solved alone; a heavy anchor keeps the
anchor; gs-pnp's choice among candidates follows held-out measurements, never the truth."""
from __future__ import annotations

import numpy as np
import pytest

from gs_onnx.physics import GaussianOperator, Mask
from gs_onnx.solve.pnp import Schedule, pnp_batch

SHAPE = (3, 8, 8)
N = 192


def identity(z, s):
    return z


def smooth(z, s):
    """A toy denoiser: a 3x3 box filter, stronger for larger sigma (an averaging towards the local mean)."""
    pad = np.pad(z, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    box = sum(pad[:, :, i:i + z.shape[2], j:j + z.shape[3]] for i in range(3) for j in range(3)) / 9.0
    a = np.clip(np.asarray(s, np.float32).reshape(-1, 1, 1, 1) * 5, 0, 1)
    return (1 - a) * z + a * box


def image(seed=0):
    rng = np.random.default_rng(seed)
    x = np.clip(0.5 + 0.2 * rng.standard_normal(SHAPE), 0, 1).astype(np.float32)
    return x.reshape(1, -1)


def test_the_schedule_falls_geometrically():
    s = Schedule(5, 0.16, 0.01).sigmas()
    np.testing.assert_allclose(s, [0.16, 0.08, 0.04, 0.02, 0.01], rtol=1e-6)
    assert Schedule(1, 0.1, 0.05).sigmas().tolist() == [0.05]
    with pytest.raises(ValueError):
        Schedule(3, 0.01, 0.1)


def test_with_an_identity_denoiser_a_mask_puts_the_measured_pixels_in_place():
    A = Mask(SHAPE, keep=0.5, seed=1)
    x = image()
    y = A.forward(x)
    start = np.full((1, N), 0.25, np.float32)
    (r,) = pnp_batch(A, y, SHAPE, identity, Schedule(3, 0.1, 0.1), x0=start, lipschitz=1.0, momentum=False)
    kept = A.adjoint(np.ones((1, A.m), np.float32))[0] > 0
    np.testing.assert_allclose(r.image.reshape(-1)[kept], x[0, kept], atol=1e-6)
    np.testing.assert_allclose(r.image.reshape(-1)[~kept], 0.25, atol=1e-6)
    assert r.iterations == 3 and r.held_out is None


@pytest.mark.parametrize("momentum", [True, False])
def test_the_reported_held_out_error_is_that_of_the_returned_image(momentum):
    A = GaussianOperator(100, N, seed=0)
    x = image()
    y = A.forward(x) + 0.01 * np.random.default_rng(1).standard_normal((1, 100)).astype(np.float32)
    w = np.ones(100, np.float32)
    w[::7] = 0.0
    (r,) = pnp_batch(A, y, SHAPE, smooth, Schedule(25, 0.2, 0.01), w=w, patience=3, momentum=momentum)
    res = (A.forward(r.image.reshape(1, -1)) - y)[0].astype(np.float64)
    assert r.held_out == pytest.approx(float((res[w == 0] ** 2).mean()), rel=1e-4)
    assert r.objective == pytest.approx(float((res ** 2).mean()), rel=1e-4)
    assert 0 <= r.best_iteration <= r.iterations


def test_rows_together_are_rows_alone():
    A = GaussianOperator(90, N, seed=3)
    X = np.concatenate([image(0), image(1), image(2)])
    Y = A.forward(X)
    w = np.ones((3, 90), np.float32)
    w[:, :9] = 0
    sched = [Schedule(10, 0.1, 0.01), Schedule(6, 0.05, 0.02), Schedule(10, 0.1, 0.01)]
    together = pnp_batch(A, Y, SHAPE, smooth, sched, w=w, patience=2)
    for j in range(3):
        (alone,) = pnp_batch(A, Y[j:j + 1], SHAPE, smooth, sched[j], w=w[j:j + 1], patience=2)
        np.testing.assert_allclose(together[j].image, alone.image, atol=1e-5)
        assert (together[j].iterations, together[j].best_iteration) == (alone.iterations, alone.best_iteration)


def test_a_heavy_anchor_keeps_the_anchor():
    A = GaussianOperator(60, N, seed=0)
    x, G = image(0), image(5)
    (r,) = pnp_batch(A, A.forward(x), SHAPE, identity, Schedule(20, 0.1, 0.1), x0=G, anchor=G, gamma=1e6)
    np.testing.assert_allclose(r.image.reshape(1, -1), G, atol=1e-3)
    (free,) = pnp_batch(A, A.forward(x), SHAPE, identity, Schedule(20, 0.1, 0.1), x0=G, anchor=G, gamma=0.0)
    assert np.abs(free.image.reshape(1, -1) - G).max() > 0.01


def test_gs_pnp_chooses_by_held_out_measurements():
    """refine() never sees the truth: given the truth as G it keeps G (no candidate explains held-out rows better);
    given a useless G (flat grey) it takes a PnP candidate."""
    from gs_onnx.solve.methods.gs_pnp import refine

    A = GaussianOperator(150, N, seed=0)
    x = image(0)
    y = A.forward(x)
    W = np.ones((1, 150), np.float32)
    W[0, ::10] = 0
    plan = {"iterations": 15, "sigma_max": 0.2, "sigma_min": 0.05}
    anchored = {"iterations": 10, "sigma_max": 0.1, "sigma_min": 0.05, "gammas": [1.0]}
    blur = lambda z, s: smooth(z, np.ones(len(z)))  # noqa: E731 - a denoiser that always blurs: PnP can't be exact
    (img,), (info,) = refine(A, y, x.reshape(1, *SHAPE), W, blur, plan, anchored, A.norm_sq_bound(), 3)
    assert info["chosen"] == "gs" and info["held_out"]["gs"] < 1e-10
    np.testing.assert_array_equal(img.reshape(1, -1), x)
    grey = np.full((1, *SHAPE), 0.5, np.float32)
    (img,), (info,) = refine(A, y, grey, W, smooth, plan, anchored, A.norm_sq_bound(), 3)
    assert info["chosen"] != "gs" and set(info["held_out"]) == {"gs", "pnp", "anchored 1"}
    assert min(v for k, v in info["held_out"].items() if k != "gs") < info["held_out"]["gs"]


def test_the_polish_smoothing_is_a_mirrored_separable_convolution():
    """smoothing() against scipy's convolve1d (mode 'mirror': numpy's and ONNX's 'reflect'), and what it is for:
    a gradient constant over 4 x 4 blocks (A^T r of x4 downsampling) leaves it without jumps at the block edges."""
    from scipy.ndimage import convolve1d

    from gs_onnx.physics import Downsample
    from gs_onnx.solve.pnp import smoothing, tent

    rng = np.random.default_rng(0)
    shape = (3, 16, 12)
    g = rng.standard_normal((2, int(np.prod(shape)))).astype(np.float32)
    k = tent(4)
    want = convolve1d(convolve1d(g.reshape(2, *shape), k, axis=2, mode="mirror"), k, axis=3, mode="mirror")
    np.testing.assert_allclose(smoothing(k, shape)(g, None).reshape(2, *shape), want, atol=1e-5)
    op = Downsample(shape, 4)
    blocky = op.adjoint(rng.standard_normal((1, op.m)).astype(np.float32)).reshape(shape)
    smooth = smoothing(k, shape)(blocky.reshape(1, -1), None).reshape(shape)
    jump = lambda a: np.abs(np.diff(a, axis=2))[:, :, 3::4].mean() / np.abs(np.diff(a, axis=2)).mean()  # noqa: E731
    assert jump(blocky) > 5 and jump(smooth) < 2   # 5.5 and 1.58 here


def test_denoising_polishes_once_at_the_noise_level_which_is_the_denoiser_applied_to_y():
    """Under the identity, gs-pnp's plan chooses plain PnP or G by the held-out pixels PnP inpaints, then polishes
    once at the measurements' noise level with the step 1 / ||A||^2 = 1: exactly D(y, sigma). The level comes from
    the sidecar, else from y itself (estimate_sigma), and the plan refuses to guess it otherwise."""
    from gs_onnx.physics import IdentityOperator
    from gs_onnx.solve.lasso import lipschitz
    from gs_onnx.solve.methods.gs_pnp import refine
    from gs_onnx.solve.pnp import PLANS, anchored_plan, noise_level, polish_for, polish_sigma_for, wants_noise

    op = IdentityOperator(SHAPE)
    rng = np.random.default_rng(3)
    x = np.tile(np.linspace(0.1, 0.9, 8, dtype=np.float32), (3, 8, 1)).reshape(1, -1)   # smooth: worth inpainting
    y = (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    W = np.ones((1, N), np.float32)
    W[0, ::10] = 0
    seen = []

    def den(z, s):
        seen.append(np.asarray(s).copy())
        return smooth(z, s)

    grey = np.full((1, *SHAPE), 0.5, np.float32)
    assert wants_noise("identity") and polish_for("identity") == 1 and anchored_plan("identity")["gammas"] == []
    # ||I||^2 = 1 exactly here (lipschitz(op) keeps a 1 % margin: the polish's input is then 0.99 y + 0.01 x)
    assert 1.0 <= lipschitz(op) <= 1.011
    (img,), (info,) = refine(op, y, grey, W, den, PLANS["onnx"]["default"], anchored_plan("identity"), 1.0,
                             5, polish_for("identity"), polish_sigma_for("identity", 0.1))
    assert info["chosen"] == "pnp" and np.allclose(seen[-1], 0.1)
    np.testing.assert_allclose(img, np.clip(smooth(y.reshape(1, *SHAPE), np.array([0.1]))[0], 0, 1),
                               atol=1e-6)
    assert noise_level({"sigma": 0.07}, y[0], op) == 0.07
    big = np.random.default_rng(0).standard_normal((3, 64, 64)).astype(np.float32) * 0.05 + 0.5
    assert abs(noise_level({"sigma": None}, big.reshape(-1), IdentityOperator((3, 64, 64))) - 0.05) < 0.005
    with pytest.raises(ValueError, match="noise level"):
        polish_sigma_for("identity", None)
