"""The composed engine (gs_onnx.engine) against independent truths: torch float64 autograd, the per-block
reference path, numpy formulas for the held-out rows, and itself (IOBinding vs plain runs, batches vs rows).

Tests marked ``cuda`` need onnxruntime-gpu with a working CUDA and are skipped cleanly elsewhere
(``benchmarks/gpu_check.sh`` runs them on a GPU machine).
"""
from __future__ import annotations

import numpy as np
import pytest

from gs_onnx.generator import registry
from gs_onnx.engine.cut import CutGenerator
from gs_onnx.engine import runtime
from gs_onnx.engine.composed import ComposedObjective, Engine
from gs_onnx.errors import GSError
from gs_onnx.generator.latent import init_latent
from gs_onnx.generator.manifest import load_manifest
from gs_onnx.solve.objective import Objective, make_objective
from gs_onnx.physics import GaussianOperator, IdentityOperator, SubsampledDCTOperator
from gs_onnx.solve.restart import Budget, recover_batch

from conftest import TINY


def _has_cuda() -> bool:
    try:
        runtime.resolve_device("cuda")
        import onnxruntime as ort  # noqa: F401

        Engine(registry.load("dcgan"), 4, IdentityOperator(12288), "cuda")
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable CUDA here
        return False


cuda = pytest.mark.skipif(not _has_cuda(), reason="needs onnxruntime-gpu with a working CUDA")


def _operators(n: int):
    return {"gaussian": GaussianOperator(150, n, seed=1), "srdct": SubsampledDCTOperator(170, n, seed=2),
            "identity": IdentityOperator(n)}  # the torch reference applies the identity implicitly (no n x n)


def _torch_reference(gen, cut, Z, layout, op, Y, Wt, to_unit):
    """f, grad and f_held in torch float64 for each row (the independent reference)."""
    import torch

    g64 = gen.double()
    A = None if isinstance(op, IdentityOperator) else torch.tensor(op.matrix(), dtype=torch.float64)
    fs, gs, hs = [], [], []
    for z, y, w in zip(Z, Y, Wt):
        lat = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in layout.unpack(z, np.float64).items()}
        x01 = g64.run(dict(lat), start=cut)["x"] * to_unit[0] + to_unit[1]
        ax = x01.reshape(-1) if A is None else A @ x01.reshape(-1)
        r = ax - torch.tensor(y, dtype=torch.float64)
        w = torch.tensor(w, dtype=torch.float64)
        f = (w * r * r).sum() / w.sum()
        grads = torch.autograd.grad(f, list(lat.values()))
        fs.append(float(f.detach()))
        gs.append(layout.pack({n: g.detach().numpy() for n, g in zip(lat, grads)}).ravel())
        hold = 1 - w
        hs.append(float((hold * r * r).sum().detach()) / max(float(hold.sum()), 1.0))
    gen.float()
    return np.array(fs), np.stack(gs), np.array(hs)


@pytest.mark.parametrize("place", ["graph", "host"])
@pytest.mark.parametrize("key", list(TINY))
def test_composed_objective_matches_torch_at_every_cut(tiny_models, key, place):
    """f, the gradient and the held-out loss of the composed graph (operator in the graph or on the host),
    for a batch of 2 rows with their own measurements and held-out rows, against torch float64 autograd,
    at every cut and with every operator that has an ONNX form."""
    pytest.importorskip("torch")
    gen, folder = tiny_models[key]
    man = load_manifest(folder)
    rng = np.random.default_rng(0)
    for name, op in _operators(man.n).items():
        for cut in range(man.depth):
            obj = ComposedObjective(Engine(man, cut, op, "cpu", operator_on=place), np.zeros(op.m, np.float32))
            Z = init_latent("cn01", obj.layout.size, rng, batch=2)
            Y = (rng.standard_normal((2, op.m)) * 0.3).astype(np.float32)
            Wt = (rng.random((2, op.m)) > 0.1).astype(np.float32)
            f, g = obj.value_and_grad_batch(Z, y=Y, w=Wt)
            fr, gr, hr = _torch_reference(gen, cut, Z, obj.layout, op, Y, Wt, man.to_unit())
            np.testing.assert_allclose(f, fr, rtol=1e-5, err_msg=f"{key} {name} cut {cut}")
            np.testing.assert_allclose(obj.held_out, hr, rtol=1e-5)
            for k in range(2):
                assert np.linalg.norm(g[k] - gr[k]) <= 1e-4 * np.linalg.norm(gr[k]), (key, name, cut, k)


@pytest.mark.parametrize("model, cut", [("dcgan", 1), ("began", 2), ("vae", 1), ("began", 4)])
def test_composed_equals_per_block_path_shipped(model, cut):
    """The shipped models: the composed engine (both operator places) gives the per-block reference's f,
    gradient, image and restart criterion, row by row in a batch of 3."""
    man = registry.load(model)
    op = GaussianOperator(int(round(0.05 * man.n)), man.n, seed=0)
    rng = np.random.default_rng(1)
    y = op.forward(rng.random((1, man.n), dtype=np.float32))[0]
    ref = Objective(CutGenerator(man, cut, "cpu"), op, y)
    Z = init_latent("cn01", ref.layout.size, rng, batch=3)
    fr, gr = ref.value_and_grad_batch(Z)
    for place in ("graph", "host"):
        obj = make_objective(man, cut, op, device="cpu", operator_on=place).with_measurements(y)
        f, g = obj.value_and_grad_batch(Z)
        np.testing.assert_allclose(f, fr, rtol=1e-5)
        for k in range(3):
            assert np.linalg.norm(g[k] - gr[k]) <= 1e-5 * np.linalg.norm(gr[k])
        lat = obj.layout.unpack(Z[:1])
        np.testing.assert_allclose(obj.image(lat), ref.image(lat), atol=2e-6)
        assert obj.measurement_error(lat) == pytest.approx(ref.measurement_error(lat), rel=1e-5)


@pytest.mark.parametrize("place", ["graph", "host"])
def test_iobinding_equals_plain_runs(shipped, place):
    """Preallocated, bound buffers give exactly what passing numpy arrays to run() gives, call after call
    (also when y changes between calls and the batch size changes)."""
    op = GaussianOperator(500, shipped.n, seed=3)
    rng = np.random.default_rng(2)
    a = ComposedObjective(Engine(shipped, 1, op, "cpu", operator_on=place, iobinding=True), np.zeros(500, np.float32))
    b = ComposedObjective(Engine(shipped, 1, op, "cpu", operator_on=place, iobinding=False), np.zeros(500, np.float32))
    for B in (1, 3, 1, 2):
        Z = init_latent("cn01", a.layout.size, rng, batch=B)
        Y = rng.standard_normal((B, 500)).astype(np.float32)
        fa, ga = a.value_and_grad_batch(Z, y=Y)
        fb, gb = b.value_and_grad_batch(Z, y=Y)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(ga, gb)
        np.testing.assert_array_equal(a.held_out, b.held_out)


@pytest.mark.parametrize("static", [False, True])
def test_batch_rows_equal_single_rows(shipped, static):
    """A batch of K rows (each with its own y) equals K evaluations of one row, to float32 rounding."""
    op = GaussianOperator(800, shipped.n, seed=5)
    rng = np.random.default_rng(3)
    obj = ComposedObjective(Engine(shipped, 1, op, "cpu", static_batch=static), np.zeros(800, np.float32))
    Z = init_latent("cn01", obj.layout.size, rng, batch=4)
    Y = rng.standard_normal((4, 800)).astype(np.float32)
    f, g = obj.value_and_grad_batch(Z, y=Y)
    for k in range(4):
        fk, gk = obj.value_and_grad_batch(Z[k:k + 1], y=Y[k:k + 1])
        assert fk[0] == pytest.approx(f[k], rel=1e-5)
        assert np.linalg.norm(gk[0] - g[k]) <= 1e-5 * np.linalg.norm(g[k])


def test_held_out_rows_never_reach_the_gradient(shipped):
    """With w = 0 on some rows, f and the gradient are those of the fitted rows alone: changing y on the
    held-out rows changes f_held and nothing else."""
    op = GaussianOperator(600, shipped.n, seed=7)
    rng = np.random.default_rng(4)
    obj = ComposedObjective(Engine(shipped, 1, op, "cpu"), np.zeros(600, np.float32))
    z = init_latent("cn01", obj.layout.size, rng)
    y = rng.standard_normal((1, 600)).astype(np.float32)
    w = np.ones((1, 600), np.float32)
    w[0, ::10] = 0
    f1, g1 = obj.value_and_grad_batch(z, y=y, w=w)
    h1 = obj.held_out.copy()
    y2 = y.copy()
    y2[0, ::10] += 5.0
    f2, g2 = obj.value_and_grad_batch(z, y=y2, w=w)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(g1, g2)
    assert obj.held_out[0] > h1[0] + 1.0
    # and f is the mean squared residual over the fitted rows (numpy, from the per-block image)
    x = CutGenerator(shipped, 1, "cpu").forward(obj.layout.unpack(z))
    r = (op.forward(x.reshape(1, -1)) - y).astype(np.float64)[0]
    assert f1[0] == pytest.approx(float((r[w[0] > 0] ** 2).mean()), rel=1e-5)
    assert h1[0] == pytest.approx(float((r[w[0] == 0] ** 2).mean()), rel=1e-5)


def test_recover_batch_images_equals_one_image_at_a_time(shipped):
    """Every restart of every image in one lockstep batch: the same recoveries as image by image, restart
    by restart, up to float32 rounding of the batched graphs, which 25 L-BFGS-B iterations amplify (so the
    winner among near-equal restarts may differ: compared by objective and PSNR; tests/test_stopping.py
    checks bit-equality with an objective that computes each row on its own)."""
    op = GaussianOperator(1200, shipped.n, seed=4)
    rng = np.random.default_rng(9)
    gen0 = CutGenerator(shipped, 0, "cpu")
    xs = gen0.forward({"z": rng.standard_normal((2, 100, 1, 1)).astype(np.float32)})
    Y = op.forward(xs.reshape(2, -1))
    obj = make_objective(shipped, 1, op, device="cpu")
    b = Budget(max_iter=25, max_fun=30)
    one = recover_batch(obj, Y, restarts=2, budget=b, seeds=[5, 6], batch="none")
    together = recover_batch(obj, Y, restarts=2, budget=b, seeds=[5, 6], batch="images")
    from gs_onnx.metrics import psnr

    for a, c, x in zip(one, together, xs):
        for ra, rc in zip(a.restarts, c.restarts):
            assert rc.objective == pytest.approx(ra.objective, rel=0.05)
            assert rc.evaluations <= 30
        assert abs(psnr(a.image, np.clip(x, 0, 1)) - psnr(c.image, np.clip(x, 0, 1))) < 0.5


def test_engine_refuses_bad_inputs(shipped):
    op = GaussianOperator(100, shipped.n, seed=0)
    with pytest.raises(GSError, match="operator has n"):
        Engine(shipped, 1, GaussianOperator(10, 99, seed=0), "cpu")
    with pytest.raises(GSError, match="unknown operator place"):
        Engine(shipped, 1, op, "cpu", operator_on="moon")
    with pytest.raises(GSError, match="CUDA graphs need"):
        Engine(shipped, 1, op, "cpu", cuda_graph=True)
    eng = Engine(shipped, 1, op, "cpu")
    with pytest.raises(GSError, match="measurements have 5 values"):
        ComposedObjective(eng, np.zeros(5, np.float32))
    with pytest.raises(GSError, match="NaN"):
        ComposedObjective(eng, np.full(100, np.nan, np.float32))
    with pytest.raises(GSError, match="unknown engine"):
        make_objective(shipped, 1, op, engine="warp")


def test_provider_reports_every_session(shipped):
    eng = Engine(shipped, 1, GaussianOperator(100, shipped.n, seed=0), "cpu")
    assert eng.provider == "CPUExecutionProvider"
    assert all(set(p) == {"CPUExecutionProvider"} for p in eng._placements)


def test_cuda_refusals_name_the_cause(monkeypatch):
    """--device cuda fails in one line: no CUDA provider, or onnxruntime and onnxruntime-gpu both installed
    (the CPU package hides CUDA)."""
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(runtime, "_installed", lambda dist: False)
    with pytest.raises(GSError, match="no CUDAExecutionProvider"):
        runtime.resolve_device("cuda")
    monkeypatch.setattr(runtime, "_installed", lambda dist: True)
    with pytest.raises(GSError, match="both onnxruntime and onnxruntime-gpu"):
        runtime.resolve_device("cuda")
    assert runtime.resolve_device("auto").name == "cpu"
    with pytest.raises(GSError, match="unknown device"):
        runtime.resolve_device("tpu")


def test_onnx_runtime_log_lines_do_not_reach_the_terminal(capfd):
    """A graph whose declared output shape disagrees with what ONNX Runtime infers makes it log a warning;
    the session factory keeps it off stderr."""
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    capfd.readouterr()
    runtime.create_session(model.SerializeToString(), "cpu")
    err = capfd.readouterr().err
    assert "onnxruntime" not in err and "MergeShapeInfo" not in err, err


# --------------------------------------------------------------------------------------------- CUDA

@cuda
@pytest.mark.parametrize("model, cut", [("dcgan", 1), ("began", 2)])
@pytest.mark.parametrize("place", ["graph", "host"])
def test_cuda_equals_cpu(model, cut, place):
    man = registry.load(model)
    op = GaussianOperator(int(round(0.1628 * man.n)), man.n, seed=0)
    rng = np.random.default_rng(0)
    y = op.forward(rng.random((1, man.n), dtype=np.float32))[0]
    cpu = make_objective(man, cut, op, device="cpu").with_measurements(y)
    gpu = make_objective(man, cut, op, device="cuda", operator_on=place).with_measurements(y)
    assert "CUDAExecutionProvider" in gpu.provider
    Z = init_latent("cn01", cpu.layout.size, rng, batch=3)
    fc, gc = cpu.value_and_grad_batch(Z)
    fg, gg = gpu.value_and_grad_batch(Z)
    np.testing.assert_allclose(fg, fc, rtol=1e-4)
    for k in range(3):
        assert np.linalg.norm(gg[k] - gc[k]) <= 1e-3 * np.linalg.norm(gc[k])


@cuda
def test_cuda_graph_equals_plain_cuda():
    man = registry.load("dcgan")
    op = GaussianOperator(2000, man.n, seed=0)
    rng = np.random.default_rng(1)
    y = op.forward(rng.random((1, man.n), dtype=np.float32))[0]
    plain = make_objective(man, 1, op, device="cuda").with_measurements(y)
    graph = make_objective(man, 1, op, device="cuda", cuda_graph=True).with_measurements(y)
    for B in (3, 3, 1, 3):
        Z = init_latent("cn01", plain.layout.size, rng, batch=B)
        fp, gp = plain.value_and_grad_batch(Z)
        fg, gg = graph.value_and_grad_batch(Z)
        np.testing.assert_allclose(fg, fp, rtol=1e-5)
        np.testing.assert_allclose(gg, gp, rtol=1e-4, atol=1e-6 * np.abs(gp).max())
