"""gs-tv in the recovery graph: the TV stage the graph runs after GS gives what the host's tv_batch gives on the
graph's own GS image (the same iterations, the image to float32 rounding); `gs-export recovery` writes it where
gs-tv is the model's default (auto), and `gs-recover FOLDER` gives `gs-recover meas.npy --method gs-tv`'s image."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gs_onnx.generator.registry import load
from gs_onnx.io.images import load_image
from gs_onnx.physics import Blur, Mask, measure
from gs_onnx.solve import Settings
from gs_onnx.solve.lasso import lipschitz
from gs_onnx.solve.methods.gs_graph import plan_inputs
from gs_onnx.solve.recovery_graph import GraphRecovery, recovery_model
from gs_onnx.solve.tv import tv_batch
from gs_onnx.solve.tv_graph import graph_stage, prox_coefficients

from test_cli import IMG_A, invoke


def test_the_prox_coefficients_are_fistas():
    c = prox_coefficients(3)
    t1 = (1 + np.sqrt(5)) / 2
    np.testing.assert_allclose(c, [0.0, (t1 - 1) / ((1 + np.sqrt(1 + 4 * t1 * t1)) / 2), c[2]], rtol=1e-6)
    assert 0 < c[2] < 1


@pytest.mark.parametrize("kind", ["blur", "mask"])
def test_the_graphs_tv_stage_is_the_hosts(kind):
    man = load("dcgan")
    x = load_image(IMG_A, 64)
    op = Blur(man.image_shape, 2.0) if kind == "blur" else Mask(man.image_shape, keep=0.3, seed=0)
    y = measure(x.reshape(1, -1), op, 0.01, 0)
    inputs, _ = plan_inputs(man, 1, op, y[0], Settings(max_iter=5), 0)
    model, values = recovery_model(man, 1, op)
    model, stage, plan, meaning, outputs = graph_stage(model, man, op)
    assert set(stage) <= set(meaning) and {"tv_iterations", "gs_image"} <= set(outputs)
    out = GraphRecovery(model, "cpu").run({**inputs, **values, **stage})
    (res,) = tv_batch(op, y, man.image_shape, plan["lam"], lipschitz=lipschitz(op), anchor=out["gs_image"][None],
                      gamma=plan["gamma"])
    assert int(out["tv_iterations"]) == res.iterations and bool(out["tv_converged"]) == res.converged
    assert 20 <= res.iterations < plan["max_iter"]   # the stopping rule ended it, after a few checks
    np.testing.assert_allclose(out["image"], res.image, atol=1e-5)
    np.testing.assert_allclose(float(out["tv_objective"]), res.objective, rtol=1e-6)
    assert np.abs(out["image"] - out["gs_image"]).max() > 0.05     # the stage changed GS's image


def test_a_gs_tv_folder_is_the_default_beyond_cs_and_gives_gs_recovers_image(tmp_path):
    from gs_onnx import cli
    from gs_onnx.cli.recovery import main as export_recovery
    from gs_onnx.metrics import psnr

    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "blur", "--sigma", "2", "-o", meas])
    assert r.exit_code == 0, r.stderr
    r = invoke(export_recovery, ["--measurements", meas, "--max-iter", "6", "--reference", IMG_A,
                                 "-o", tmp_path / "fold"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    iface = json.loads((tmp_path / "fold" / "recovery.json").read_text())
    assert iface["method"] == "gs-tv" and iface["plan"]["tv"]["lam"] > 0    # auto: dcgan's default for blur
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parent.parent / "gs_onnx" / "schema" / "recovery.schema.json")
                        .read_text())
    jsonschema.validate(iface, schema)
    r = invoke(cli.recover_main, [tmp_path / "fold", "-o", tmp_path / "out", "-q"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["method"] == "gs-tv" and rep["images"][0]["tv"]["iterations"] > 0
    folder_img = np.load(tmp_path / "out" / "recovered.npy")[0]
    r = invoke(cli.recover_main, [meas, "--method", "gs-tv", "--max-iter", "6", "--optimizer", "lbfgs",
                                  "-o", tmp_path / "host", "-q"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    host_img = np.load(tmp_path / "host" / "recovered.npy")[0]
    ref = load_image(IMG_A, 64)
    assert abs(psnr(folder_img, ref) - psnr(host_img, ref)) < 0.1


def test_under_a_box_the_default_runs_the_graphs_optimizer_on_the_host_too(tmp_path):
    """Inside a centre box only GS fills the hole, so the host's gs-tv runs the paper's L-BFGS there, as the graph
    does (gs_onnx.solve.tv.GS_OPTIMIZER): `gs-recover meas.npy` and `gs-recover FOLDER` give the same image."""
    from gs_onnx import cli
    from gs_onnx.cli.recovery import main as export_recovery

    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "box", "-o", meas])
    assert r.exit_code == 0, r.stderr
    r = invoke(export_recovery, ["--measurements", meas, "--max-iter", "6", "-o", tmp_path / "fold"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert json.loads((tmp_path / "fold" / "recovery.json").read_text())["method"] == "gs-tv"
    r = invoke(cli.recover_main, [tmp_path / "fold", "-o", tmp_path / "out", "-q"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    r = invoke(cli.recover_main, [meas, "--max-iter", "6", "-o", tmp_path / "host", "-q"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((tmp_path / "host" / "report.json").read_text())
    assert rep["method"] == "gs-tv" and "lbfgs" in json.dumps(rep["budget"]).lower()
    folder_img = np.load(tmp_path / "out" / "recovered.npy")[0]
    host_img = np.load(tmp_path / "host" / "recovered.npy")[0]
    assert np.abs(folder_img - host_img).max() < 1e-3
