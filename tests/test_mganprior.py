"""mGANprior from the per-block graphs: gradient against finite differences, composition against the
whole generator, recovery through the shared restart loop."""
from __future__ import annotations

import numpy as np
import pytest

from gs_onnx.engine.cut import CutGenerator
from gs_onnx.errors import GSError
from gs_onnx.generator.latent import init_latent
from gs_onnx.generator.manifest import load_manifest
from gs_onnx.solve.mganprior import MultiCodeObjective, default_codes
from gs_onnx.physics import GaussianOperator, IdentityOperator
from gs_onnx.solve.restart import Budget, run_restarts


def _fd_check(obj, rng, parts=None, eps=1e-3, rel=1e-2):
    """Central differences along unit directions restricted to each packed variable in turn."""
    z = init_latent("cn01", obj.layout.size, rng)[0]
    _, g = obj.value_and_grad(z)
    offsets, i = {}, 0
    for n in obj.layout.names:
        offsets[n] = (i, i + obj.layout.sizes[n])
        i += obj.layout.sizes[n]
    for name in parts or obj.layout.names:
        lo, hi = offsets[name]
        gp = np.zeros_like(g)
        gp[lo:hi] = g[lo:hi]
        r = np.zeros_like(g)
        r[lo:hi] = rng.standard_normal(hi - lo)
        # half along the gradient, half random: the directional derivative stands well above the
        # float32 rounding of f, and a wrong gradient component still changes it
        d = gp / np.linalg.norm(gp) + r / np.linalg.norm(r)
        d /= np.linalg.norm(d)
        fd = (obj.value(z + eps * d) - obj.value(z - eps * d)) / (2 * eps)
        assert fd == pytest.approx(float(g @ d), rel=rel), name


@pytest.mark.parametrize("cut", [1, 2])
def test_gradient_matches_finite_differences_shipped(shipped, cut):
    rng = np.random.default_rng(5)
    op = GaussianOperator(400, shipped.n, seed=1)
    y = op.forward(rng.random((1, shipped.n), dtype=np.float32))[0]
    obj = MultiCodeObjective(shipped, cut, op, y, codes=4, device="cpu")
    assert obj.layout.names == ("codes", "alpha")
    _fd_check(obj, rng)


@pytest.mark.parametrize("key,cut,eps", [("began", 2, 2e-2), ("began", 3, 2e-2), ("vae", 1, 2e-2)])
def test_gradient_matches_finite_differences_tiny(tiny_models, key, cut, eps):
    """BEGAN at c >= 2 also has the free skip source h1, whose gradient comes from the tail alone."""
    man = load_manifest(tiny_models[key][1])
    rng = np.random.default_rng(6)
    op = GaussianOperator(150, man.n, seed=2)
    y = op.forward(rng.random((1, man.n), dtype=np.float32))[0]
    obj = MultiCodeObjective(man, cut, op, y, codes=3, device="cpu")
    if key == "began":
        assert obj.free == ("h1",) and "h1" in obj.layout.names
    # random tiny weights give f ~ 10 but derivatives ~ 1e-2 along the codes: a wider step keeps the
    # difference above the float32 rounding of f where the activations are smooth (ELU, LeakyReLU's
    # few kinks). The tiny DCGAN's ReLUs leave no step that is both (its check is against autograd).
    _fd_check(obj, rng, eps=eps)


@pytest.mark.parametrize("key,cut", [("began", 2), ("vae", 2), ("dcgan", 3)])
def test_gradient_matches_torch_autograd(tiny_models, key, cut):
    """The whole mGANprior objective rebuilt in torch float64 from the same generator: same f and gradient."""
    import torch

    gen, folder = tiny_models[key]
    man = load_manifest(folder)
    rng = np.random.default_rng(7)
    op = GaussianOperator(120, man.n, seed=4)
    y = op.forward(rng.random((1, man.n), dtype=np.float32))[0]
    obj = MultiCodeObjective(man, cut, op, y, codes=3, device="cpu")
    z = init_latent("cn01", obj.layout.size, rng)[0]
    f, g = obj.value_and_grad(z)

    g64 = gen.double()
    v = {k: torch.tensor(a, dtype=torch.float64, requires_grad=True)
         for k, a in obj.layout.unpack(z, dtype=np.float64).items()}
    feats = g64.run({"z": v["codes"][0]})[obj.composed]
    comp = (feats * v["alpha"][0].reshape(obj._alpha_shape)).sum(0, keepdim=True)
    x = g64.run({obj.composed: comp, **{n: v[n] for n in obj.free}}, start=cut)["x"]
    scale, shift = man.to_unit()
    r = (x * scale + shift).reshape(1, -1) @ torch.tensor(op.matrix(), dtype=torch.float64).T \
        - torch.tensor(y, dtype=torch.float64)
    ft = (r * r).sum() / op.m
    gt = torch.autograd.grad(ft, [v[n] for n in obj.layout.names])
    gt = np.concatenate([t.reshape(-1).numpy() for t in gt])
    gen.float()
    assert f == pytest.approx(float(ft.detach()), rel=1e-5)
    assert np.linalg.norm(g - gt) <= 1e-5 * np.linalg.norm(gt)


def test_one_code_with_unit_weights_is_the_whole_generator(shipped):
    """N = 1 and alpha = 1 compose exactly G(z); N = 2 with alpha = 1 gives G_c(F_1 + F_2)."""
    rng = np.random.default_rng(0)
    op = IdentityOperator(shipped.n)
    y = np.zeros(shipped.n, np.float32)
    z = rng.standard_normal((2, *shipped.tensors["z"])).astype(np.float32)
    full = CutGenerator(shipped, 0, "cpu").forward({"z": z[:1]})
    obj1 = MultiCodeObjective(shipped, 1, op, y, codes=1, device="cpu")
    x1 = obj1.image({"codes": z[None, :1], "alpha": np.ones((1, 1, obj1.channels), np.float32)})
    np.testing.assert_allclose(x1, full, atol=1e-5)

    obj2 = MultiCodeObjective(shipped, 2, op, y, codes=2, device="cpu")
    x2 = obj2.image({"codes": z[None], "alpha": np.ones((1, 2, obj2.channels), np.float32)})
    env = CutGenerator(shipped, 0, "cpu").forward({"z": z}, keep=True)[1]
    summed = env["h2"].sum(axis=0, keepdims=True)
    np.testing.assert_allclose(x2, CutGenerator(shipped, 2, "cpu").forward({"h2": summed}), atol=1e-5)


def test_recovers_a_generated_image_through_recover(shipped):
    """Recovery of an image the generator made (A = I, no noise): the objective falls 20-fold or more."""
    rng = np.random.default_rng(2)
    x = CutGenerator(shipped, 0, "cpu").forward({"z": rng.standard_normal((1, *shipped.tensors["z"]))
                                                .astype(np.float32)})
    y = x.reshape(-1)
    obj = MultiCodeObjective(shipped, 1, IdentityOperator(shipped.n), y, codes=3, device="cpu")
    z0 = init_latent("cn01", obj.layout.size, np.random.default_rng([0, 0]))[0]
    f0 = obj.value(z0)
    rec = run_restarts(obj, restarts=1, budget=Budget(max_iter=60, max_fun=75))
    assert rec.objective < f0 / 20
    assert rec.image.shape == shipped.image_shape and 0 <= rec.image.min() and rec.image.max() <= 1


def test_bad_arguments(shipped):
    op = IdentityOperator(shipped.n)
    y = np.zeros(shipped.n, np.float32)
    with pytest.raises(GSError, match="cut must be in 1.."):
        MultiCodeObjective(shipped, 0, op, y, codes=2)
    with pytest.raises(GSError, match="cut must be in 1.."):
        MultiCodeObjective(shipped, shipped.depth, op, y, codes=2)
    with pytest.raises(GSError, match="at least one code"):
        MultiCodeObjective(shipped, 1, op, y, codes=0)
    with pytest.raises(GSError, match="n = 10"):
        MultiCodeObjective(shipped, 1, IdentityOperator(10), y, codes=2)
    assert default_codes(shipped) == 10
