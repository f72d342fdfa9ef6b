"""The torch-free runtime against independent truths: torch autograd, finite differences, known solutions."""
from __future__ import annotations

import numpy as np
import pytest

from gs_onnx.engine.cut import CutGenerator
from gs_onnx.errors import GSError
from gs_onnx.generator.latent import LatentLayout, init_latent
from gs_onnx.generator.manifest import load_manifest
from gs_onnx.metrics import psnr
from gs_onnx.solve.objective import Objective
from gs_onnx.physics import GaussianOperator, IdentityOperator
from gs_onnx.solve.restart import Budget, recover
from gs_onnx.solve.stopping import PAPER

from conftest import TINY


def _torch_objective(gen, cut, latents, A, y, to_unit):
    """f and df/dlatents in torch (float64) for the cut generator: the independent reference."""
    import torch

    g64 = gen.double()
    zs = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in latents.items()}
    env = g64.run(dict(zs), start=cut)
    x01 = env["x"] * to_unit[0] + to_unit[1]
    r = torch.tensor(A, dtype=torch.float64) @ x01.reshape(-1) - torch.tensor(y, dtype=torch.float64)
    f = (r * r).sum() / len(y)
    grads = torch.autograd.grad(f, list(zs.values()))
    gen.float()
    return float(f.detach()), {n: g.numpy() for n, g in zip(zs, grads)}


@pytest.mark.parametrize("merged", [False, True], ids=["chained", "merged"])
@pytest.mark.parametrize("key", list(TINY))
def test_objective_and_gradient_match_torch_at_every_cut(tiny_models, key, merged):
    """Per-block sessions and the merged tail (gs_onnx.merge) both against torch float64 autograd."""
    pytest.importorskip("torch")
    gen, folder = tiny_models[key]
    man = load_manifest(folder)
    rng = np.random.default_rng(0)
    op = GaussianOperator(300, man.n, seed=1)
    y = rng.standard_normal(op.m).astype(np.float32) * 0.3
    for cut in range(man.depth):
        cg = CutGenerator(man, cut, "cpu", merged=merged)
        assert cg.merged == merged
        layout = LatentLayout(cg.shapes)
        z = init_latent("cn01", layout.size, rng)[0]
        f, g = Objective(cg, op, y).value_and_grad(z)
        lat = {n: v.astype(np.float64) for n, v in layout.unpack(z).items()}
        f_ref, g_ref = _torch_objective(gen, cut, lat, op.matrix(), y, man.to_unit())
        g_ref = layout.pack(g_ref).ravel()
        assert abs(f - f_ref) <= 1e-5 * abs(f_ref)
        assert np.linalg.norm(g - g_ref) <= 1e-4 * np.linalg.norm(g_ref), (key, cut)


@pytest.mark.parametrize("model, cut", [("began", 2), ("began", 4), ("dcgan", 0)])
def test_merged_tail_equals_per_block_sessions(model, cut):
    """The merged tail computes the chained blocks' image and gradients; BEGAN's skip source gets the sum
    of several blocks' contributions in one Sum node (float32 rounding of the order only)."""
    from gs_onnx.generator import registry

    man = registry.load(model)
    a, b = CutGenerator(man, cut, "cpu", merged=False), CutGenerator(man, cut, "cpu", merged=True)
    assert len(b.inputs) == (2 if (model, cut) != ("dcgan", 0) and model == "began" else 1)
    layout = LatentLayout(a.shapes)
    lat = layout.unpack(init_latent("cn01", layout.size, np.random.default_rng(0), batch=2))
    xa, ea = a.forward(lat, keep=True)
    xb, eb = b.forward(lat, keep=True)
    np.testing.assert_array_equal(xa, xb)
    g = np.random.default_rng(1).standard_normal(xa.shape).astype(np.float32)
    ga, gb = a.vjp(ea, g), b.vjp(eb, g)
    assert ga.keys() == gb.keys()
    for n in ga:
        np.testing.assert_allclose(gb[n], ga[n], rtol=1e-5, atol=1e-6 * np.abs(ga[n]).max())


def test_gradient_matches_finite_differences_shipped(shipped):
    """Central differences along unit directions (float32 graphs: eps 1e-3 balances rounding and kinks)."""
    rng = np.random.default_rng(3)
    op = GaussianOperator(500, shipped.n, seed=2)
    y = op.forward(rng.random((1, shipped.n), dtype=np.float32))[0]
    for cut in (0, 1, 2):
        obj = Objective(CutGenerator(shipped, cut, "cpu"), op, y)
        z = init_latent("cn01", obj.layout.size, rng)[0]
        _, g = obj.value_and_grad(z)
        for _ in range(3):
            # unit directions half along the gradient, half random, so that the directional derivative
            # stands well above the float32 rounding of f (a purely random direction in 8192+ dimensions
            # is nearly orthogonal to the gradient)
            r = rng.standard_normal(z.size)
            d = g / np.linalg.norm(g) + r / np.linalg.norm(r)
            d /= np.linalg.norm(d)
            eps = 1e-3
            fd = (obj.value(z + eps * d) - obj.value(z - eps * d)) / (2 * eps)
            assert fd == pytest.approx(float(g @ d), rel=1e-2), cut


def test_cut_generator_composes_to_full_generator(tiny_models):
    """Feeding G_c the activations that blocks 0..c-1 produce gives the image of the whole generator."""
    import torch

    gen, folder = tiny_models["began"]
    man = load_manifest(folder)
    z = torch.rand(2, *gen.latent_shape) * 2 - 1
    with torch.no_grad():
        env = gen.run({"z": z})
    full = CutGenerator(man, 0, "cpu").forward({"z": z.numpy()})
    for cut in range(man.depth):
        cg = CutGenerator(man, cut, "cpu")
        x = cg.forward({n: env[n].numpy() for n in cg.inputs})
        np.testing.assert_allclose(x, full, atol=2e-5)
        np.testing.assert_allclose(x, env["x"].numpy() * man.to_unit()[0] + man.to_unit()[1], atol=2e-5)


def test_recovers_an_image_the_generator_made(shipped):
    """A = I, no noise: the generator's own image is recovered (c=0 finds the latent; c=1 gets close)."""
    z = init_latent("cn01", 100, np.random.default_rng(5)).reshape(1, 100, 1, 1).astype(np.float32)
    x = CutGenerator(shipped, 0, "cpu").forward({"z": z})[0]
    op = IdentityOperator(shipped.n)
    r0 = recover(CutGenerator(shipped, 0, "cpu"), op, x.reshape(-1), restarts=1, budget=Budget(200, 250))
    assert psnr(r0.image, x) > 40
    r1 = recover(CutGenerator(shipped, 1, "cpu"), op, x.reshape(-1), restarts=1, budget=Budget(200, 250))
    assert psnr(r1.image, x) > 33


def test_restart_winner_is_lowest_measurement_error(shipped):
    rng = np.random.default_rng(0)
    op = GaussianOperator(300, shipped.n, seed=0)
    y = op.forward(rng.random((1, shipped.n), dtype=np.float32))[0]
    r = recover(CutGenerator(shipped, 1, "cpu"), op, y, restarts=3, budget=Budget(5, 8), seed=4, stop=PAPER)
    errs = [rr.measurement_error for rr in r.restarts]
    assert r.best_restart == int(np.argmin(errs))
    assert r.measurement_error == min(errs)
    assert r.image.min() >= 0 and r.image.max() <= 1
    assert r.evaluations == sum(rr.evaluations for rr in r.restarts) and all(rr.evaluations <= 8 for rr in r.restarts)


def test_cn01_init_is_clipped_normal():
    z = init_latent("cn01", 200_000, np.random.default_rng(0))
    assert z.min() == -1.0 and z.max() == 1.0
    frac = np.mean(np.abs(z) == 1.0)
    assert abs(frac - 0.3173) < 0.01  # P(|N(0,1)| > 1): clipped, not resampled
    with pytest.raises(GSError):
        init_latent("bogus", 3, np.random.default_rng(0))


def test_layout_round_trip():
    lay = LatentLayout({"h2": (4, 2, 2), "h1": (3, 1, 1)})
    flat = np.arange(2 * lay.size, dtype=np.float64).reshape(2, -1)
    t = lay.unpack(flat)
    assert t["h2"].shape == (2, 4, 2, 2) and t["h1"].shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(lay.pack(t), flat)


def test_cut_out_of_range(shipped):
    for c in (-1, shipped.depth, 99):
        with pytest.raises(GSError, match="out of range"):
            CutGenerator(shipped, c, "cpu")


def test_cuda_refused_without_cuda(shipped):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    with pytest.raises(GSError, match="CUDA"):
        CutGenerator(shipped, 1, "cuda")


def test_webgpu_is_a_device_and_refused_in_one_line_without_one(shipped):
    """--device webgpu: without the plugin (pip install 'gs-onnx[webgpu]') or without a WebGPU device that ONNX
    Runtime lists (the plugin lists hardware GPUs only), one GSError naming the problem; where a device is listed (a
    GPU machine: benchmarks/gpu_check.sh) the generator runs with WebGPU among its providers."""
    from gs_onnx.engine.runtime import DEVICE_CHOICES, webgpu_devices

    assert "webgpu" in DEVICE_CHOICES
    try:
        listed = webgpu_devices()
    except GSError as e:
        assert "pip install 'gs-onnx[webgpu]'" in str(e)
        listed = None
    if listed:
        gen = CutGenerator(shipped, 1, "webgpu")
        assert gen.provider == "WebGpuExecutionProvider"
        return
    with pytest.raises(GSError, match="--device webgpu.*(plugin|no WebGPU device)"):
        CutGenerator(shipped, 1, "webgpu")


def test_lockstep_equals_sequential_bit_for_bit():
    """Batched restarts with an evaluator that computes each row on its own give the sequential iterates
    exactly: each restart keeps its own L-BFGS-B state and stopping (here they stop at different steps)."""
    from scipy.optimize import minimize

    from gs_onnx.solve.restart import _options, minimize_lockstep

    scales = np.array([1.0, 3.0, 10.0, 30.0])

    def rosen(z, s):
        f = np.sum(s * (z[1:] - z[:-1] ** 2) ** 2 + (1 - z[:-1]) ** 2)
        g = np.zeros_like(z)
        g[1:] += 2 * s * (z[1:] - z[:-1] ** 2)
        g[:-1] += -4 * s * z[:-1] * (z[1:] - z[:-1] ** 2) - 2 * (1 - z[:-1])
        return f, g

    def evaluate(keys, Z):
        out = [rosen(z, scales[k]) for k, z in zip(keys, Z)]
        return np.array([o[0] for o in out]), np.stack([o[1] for o in out])

    rng = np.random.default_rng(0)
    x0s = [rng.standard_normal(6) for _ in scales]
    budget = Budget(max_iter=200, max_fun=250, history=10)
    batched = minimize_lockstep(evaluate, x0s, budget)
    nfev = set()
    for k, (res, evals) in enumerate(batched):
        ref = minimize(lambda z, _k=k: rosen(z, scales[_k]), x0s[k], jac=True, method="L-BFGS-B",
                       options=_options(budget))
        np.testing.assert_array_equal(res.x, ref.x)
        assert evals == ref.nfev
        nfev.add(evals)
    assert len(nfev) > 1  # the restarts really stopped at different times


def test_lockstep_passes_errors_to_every_run():
    from gs_onnx.solve.restart import minimize_lockstep

    def evaluate(keys, Z):
        raise GSError("boom")

    with pytest.raises(GSError, match="boom"):
        minimize_lockstep(evaluate, [np.zeros(3), np.ones(3)], Budget(max_iter=5, max_fun=6))


def test_batched_restarts_match_sequential_shipped(shipped):
    """The same recovery with the 3 restarts batched through the graphs: PSNR within 0.15 dB (batched and
    single-row graphs round differently; 40 L-BFGS-B iterations amplify it)."""
    rng = np.random.default_rng(8)
    x = CutGenerator(shipped, 0, "cpu").forward({"z": rng.standard_normal((1, 100, 1, 1)).astype(np.float32)})
    op = GaussianOperator(1500, shipped.n, seed=4)
    y = op.forward(x.reshape(1, -1))[0]
    gen = CutGenerator(shipped, 1, "cpu")
    b = Budget(max_iter=40, max_fun=50)
    seq = recover(gen, op, y, restarts=3, budget=b, seed=2, stop=PAPER)
    bat = recover(gen, op, y, restarts=3, budget=b, seed=2, batch=True, stop=PAPER)
    x0 = np.clip(x[0], 0, 1)
    assert abs(psnr(seq.image, x0) - psnr(bat.image, x0)) < 0.15
    # float32 rounding differs between batch sizes and L-BFGS-B amplifies it over 40 iterations
    for a, c in zip(seq.restarts, bat.restarts):
        assert a.objective == pytest.approx(c.objective, rel=0.05)
