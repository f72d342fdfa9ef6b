"""The torch reference of GS (gs_export.reference) computes what the ONNX runtime computes."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gs_export.reference import TorchObjective  # noqa: E402
from gs_onnx.engine.cut import CutGenerator  # noqa: E402
from gs_onnx.generator.latent import init_latent  # noqa: E402
from gs_onnx.generator.manifest import load_manifest  # noqa: E402
from gs_onnx.metrics import psnr  # noqa: E402
from gs_onnx.solve.objective import Objective  # noqa: E402
from gs_onnx.physics import GaussianOperator  # noqa: E402
from gs_onnx.solve.restart import Budget, run_restarts  # noqa: E402


@pytest.mark.parametrize("key,cut", [("dcgan", 1), ("began", 2), ("vae", 1)])
def test_same_objective_gradient_and_recovery(tiny_models, key, cut):
    gen, folder = tiny_models[key]
    man = load_manifest(folder)
    op = GaussianOperator(200, man.n, seed=3)
    rng = np.random.default_rng(1)
    x_true = rng.random(man.n, dtype=np.float32)
    y = op.forward(x_true[None])[0]
    onnx_obj = Objective(CutGenerator(man, cut, "cpu"), op, y)
    torch_obj = TorchObjective(gen, cut, op, y, man.to_unit())
    for _ in range(3):
        z = init_latent("cn01", onnx_obj.layout.size, rng)[0]
        f1, g1 = onnx_obj.value_and_grad(z)
        f2, g2 = torch_obj.value_and_grad(z)
        assert f1 == pytest.approx(f2, rel=1e-5)
        assert np.linalg.norm(g1 - g2) <= 1e-4 * np.linalg.norm(g2)
    b = Budget(max_iter=10, max_fun=12)
    r1 = run_restarts(onnx_obj, restarts=2, budget=b)
    r2 = run_restarts(torch_obj.with_measurements(y), restarts=2, budget=b)
    x = x_true.reshape(man.image_shape)
    assert abs(psnr(r1.image, x) - psnr(r2.image, x)) < 0.05
