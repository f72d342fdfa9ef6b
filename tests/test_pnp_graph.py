"""gs-pnp in the recovery graph: the PnP stage the graph runs after GS (candidates, held-out choice, polish, the
denoiser's nodes inlined) gives what the host's gs_pnp.refine gives on the graph's own GS image, to float32
rounding; a folder written by `gs-export recovery --method gs-pnp` runs with `gs-recover FOLDER`, chunked or not."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gs_onnx.generator.denoiser import INPUTS as DEN_IN, OUTPUTS as DEN_OUT, load_denoiser
from gs_onnx.generator.manifest import load_graph
from gs_onnx.generator.registry import load
from gs_onnx.io.images import load_image
from gs_onnx.physics import Downsample, GaussianOperator, Mask, measure
from gs_onnx.solve import Settings
from gs_onnx.solve.lasso import lipschitz
from gs_onnx.solve.methods.gs_graph import plan_inputs
from gs_onnx.solve.methods.gs_pnp import refine
from gs_onnx.solve.pnp_graph import stage_values
from gs_onnx.solve.pnp_graph import with_pnp_stage
from gs_onnx.solve.recovery_graph import GraphRecovery, recovery_model

from test_cli import IMG_A, invoke

PLAIN = {"iterations": 8, "sigma_max": 0.2, "sigma_min": 0.02, "step": 1.5}
ANCHORED = {"iterations": 5, "sigma_max": 0.05, "sigma_min": 0.02, "step": 1.2, "gammas": [0.1, 1.0]}


@pytest.mark.parametrize("kind,flip", [("mask", False), ("gaussian", True), ("downsample", False)])
def test_the_graphs_stage_is_the_hosts(kind, flip, tiny_denoiser):
    """x4 also checks the polish at a level of its own with the block tent on the data gradient (the plan of
    ANCHORED['downsample'])."""
    from gs_onnx.engine.denoiser import Denoiser
    from gs_onnx.solve.pnp import tent

    man = load("dcgan")
    x = load_image(IMG_A, 64)
    op = {"mask": lambda: Mask(man.image_shape, keep=0.3, seed=0), "gaussian": lambda: GaussianOperator(900, man.n, 0),
          "downsample": lambda: Downsample(man.image_shape, 4)}[kind]()
    polish = {"polish_sigma": 0.05, "polish_kernel": tent(4)} if kind == "downsample" else {}
    y = measure(x.reshape(1, -1), op, 0.01, 0)
    # x4: GS stopped after 1 iteration, so that a candidate (and the polish) beats its image
    inputs, _ = plan_inputs(man, 1, op, y[0], Settings(max_iter=1 if polish else 8), 0, holdout_rows=True)
    assert (inputs["w"] == 0).any()           # gs-pnp holds rows out even where GS's plan is fixed
    model, values = recovery_model(man, 1, op)
    dman = load_denoiser(tiny_denoiser[1])
    model = with_pnp_stage(model, op.onnx_form(), load_graph(dman, dman.graph, DEN_IN, DEN_OUT), man.image_shape, op.m,
                           flip=flip, **polish)
    L = lipschitz(op)
    out = GraphRecovery(model, "cpu").run({**inputs, **values, **stage_values(PLAIN, ANCHORED, L, 2, 2)})
    (img,), (info,) = refine(op, y, out["gs_image"][None], inputs["w"], Denoiser(dman, device="cpu", flip=flip), PLAIN,
                             ANCHORED, L, 2, 2, **polish)
    if polish:   # the polish ran (a candidate was chosen) and its settings changed the image
        assert info["chosen"] != "gs"
        (plain,), _ = refine(op, y, out["gs_image"][None], inputs["w"], Denoiser(dman, device="cpu", flip=flip), PLAIN,
                             ANCHORED, L, 2, 2)
        assert np.abs(plain - img).max() > 1e-3
    names = ["gs", "pnp", "anchored 0.1", "anchored 1"]
    assert names[int(out["pnp_chosen"])] == info["chosen"]
    np.testing.assert_allclose(out["pnp_held_out"], [info["held_out"][k] for k in names], rtol=1e-4)
    assert list(out["pnp_rows_iterations"]) == [info["iterations"][k] for k in names[1:]]
    np.testing.assert_allclose(out["image"], img, atol=1e-4)


@pytest.mark.parametrize("flip", [False, True])
def test_the_graphs_classical_candidate_is_the_hosts(flip, tiny_denoiser):
    """A classical candidate (plain PnP with the sliding-window DCT denoiser, its nodes the graph's own) beside the
    network's: the same held-out errors, choice, iterations and image as the host's refine with ``extra``; the
    candidate is chosen here (the tiny network denoises poorly), so the polish runs with its denoiser. To 1e-3, not
    1e-4: a coefficient at the hard threshold falls on either side with float32 rounding (measured: the image 7e-4
    apart at most, 2.5e-5 on average; the held-out error 4.5e-4 relative)."""
    from gs_onnx.engine.dct_denoiser import DCTDenoiser, dct_denoiser_model
    from gs_onnx.engine.denoiser import Denoiser

    man = load("dcgan")
    x = load_image(IMG_A, 64)
    op = Mask(man.image_shape, keep=0.3, seed=0)
    y = measure(x.reshape(1, -1), op, 0.01, 0)
    inputs, _ = plan_inputs(man, 1, op, y[0], Settings(max_iter=3), 0, holdout_rows=True)
    model, values = recovery_model(man, 1, op)
    dman = load_denoiser(tiny_denoiser[1])
    model = with_pnp_stage(model, op.onnx_form(), load_graph(dman, dman.graph, DEN_IN, DEN_OUT), man.image_shape, op.m,
                           flip=flip, classical=[dct_denoiser_model(3)])
    dct_plan = {"iterations": 10, "sigma_max": 0.2, "sigma_min": 0.01, "step": 1.5}
    L = lipschitz(op)
    out = GraphRecovery(model, "cpu").run({**inputs, **values, **stage_values(PLAIN, ANCHORED, L, 2, 2,
                                                                              [("pnp-dct", dct_plan)])})
    (img,), (info,) = refine(op, y, out["gs_image"][None], inputs["w"], Denoiser(dman, device="cpu", flip=flip), PLAIN,
                             ANCHORED, L, 2, 2, extra=[("pnp-dct", DCTDenoiser(device="cpu"), dct_plan)])
    names = ["gs", "pnp", "anchored 0.1", "anchored 1", "pnp-dct"]
    assert info["chosen"] == "pnp-dct" and names[int(out["pnp_chosen"])] == "pnp-dct"
    np.testing.assert_allclose(out["pnp_held_out"], [info["held_out"][k] for k in names], rtol=1e-3)
    assert list(out["pnp_rows_iterations"]) == [info["iterations"][k] for k in names[1:]]
    np.testing.assert_allclose(out["image"], img, atol=1e-3)


def test_a_gs_pnp_folder_runs_in_gs_recover(tmp_path, tiny_denoiser):
    from gs_onnx import cli
    from gs_onnx.cli.recovery import main as export_recovery

    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "mask", "--keep", "0.3", "-o", meas])
    assert r.exit_code == 0, r.stderr
    r = invoke(export_recovery, ["--measurements", meas, "--method", "gs-pnp", "--denoiser", tiny_denoiser[1],
                                 "--max-iter", "6", "--reference", IMG_A, "-o", tmp_path / "fold"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    iface = json.loads((tmp_path / "fold" / "recovery.json").read_text())
    assert iface["method"] == "gs-pnp" and iface["plan"]["pnp"]["candidates"][0] == "pnp"
    assert {"pnp_sigma", "pnp_gamma", "pnp_tau", "pnp_from_grey"} <= set(iface["inputs"])
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parent.parent / "gs_onnx" / "schema" / "recovery.schema.json").read_text())
    jsonschema.validate(iface, schema)
    r = invoke(cli.recover_main, [tmp_path / "fold", "-o", tmp_path / "out", "-q"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    row = rep["images"][0]
    assert rep["method"] == "gs-pnp" and row["pnp"]["chosen"] in ["gs", *iface["plan"]["pnp"]["candidates"]]
    assert len(row["pnp"]["held_out"]) == len(iface["plan"]["pnp"]["candidates"]) + 1
    # chunks of 2 GS iterations (the PnP stage runs in the last) give the one run's image, bit for bit
    from gs_onnx.io.recovery_folder import read_folder

    graph, inputs, _ = read_folder(tmp_path / "fold")
    runner = GraphRecovery(graph, "cpu")
    one = runner.run(inputs)
    chunked = runner.run(inputs, chunk=2)
    np.testing.assert_array_equal(one["image"], chunked["image"])
    assert int(one["pnp_chosen"]) == int(chunked["pnp_chosen"])
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "recovered.npy")[0], one["image"])


def test_gs_recover_runs_gs_pnp_in_the_graph_engine(tmp_path, tiny_denoiser):
    from gs_onnx import cli

    meas = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.1", "-o", meas])
    assert r.exit_code == 0, r.stderr
    r = invoke(cli.recover_main, [meas, "--method", "gs-pnp", "--engine", "recovery-graph", "--denoiser",
                                  tiny_denoiser[1], "--max-iter", "6", "-o", tmp_path / "out", "-q"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    row = rep["images"][0]
    assert rep["method"] == "gs-pnp" and rep["engine"] == "recovery-graph" and set(row["pnp"]["held_out"]) == \
        {"gs", *rep["pnp"]["candidates"]}
    assert row["pnp"]["chosen"] in row["pnp"]["held_out"] and rep["stopping"]["rule"] == "holdout"


def test_the_graphs_denoisers_see_only_the_rows_that_step(tmp_path, tiny_denoiser):
    """ONNX Runtime's profile of the stage: the network's first node in the candidates' loop is fed, over all
    passes, the network rows that stepped (``pnp_rows_iterations``), twice with the mirror, plus one stand-in row in
    the passes where none did; the DCT denoiser's likewise its row's; neither sees every row in every pass (as the
    graph did before: finished rows and the other denoiser's rows wasted its time)."""
    import onnxruntime as ort

    from gs_onnx.engine.dct_denoiser import dct_denoiser_model

    man = load("dcgan")
    op = Mask(man.image_shape, keep=0.3, seed=0)
    y = measure(load_image(IMG_A, 64).reshape(1, -1), op, 0.01, 0)
    inputs, _ = plan_inputs(man, 1, op, y[0], Settings(max_iter=3), 0, holdout_rows=True)
    model, values = recovery_model(man, 1, op)
    dman = load_denoiser(tiny_denoiser[1])
    den = load_graph(dman, dman.graph, DEN_IN, DEN_OUT)
    cls = dct_denoiser_model(3)
    model = with_pnp_stage(model, op.onnx_form(), den, man.image_shape, op.m, flip=True, classical=[cls])
    plan = {"iterations": 10, "sigma_max": 0.2, "sigma_min": 0.01, "step": 1.5}
    feed = {**inputs, **values, **stage_values(PLAIN, ANCHORED, lipschitz(op), 2, 0, [("pnp-dct", plan)])}
    so = ort.SessionOptions()
    so.enable_profiling, so.profile_file_prefix = True, str(tmp_path / "prof")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(names, feed)))
    events = json.loads(open(sess.end_profiling()).read())
    iters = [int(v) for v in out["pnp_rows_iterations"]]      # pnp, anchored 0.1, anchored 1, pnp-dct
    assert len(iters) == 4 and min(iters) < max(iters)       # the rows stop at different passes

    def batches(first):   # per instance of a denoiser: the batch its first node saw, pass after pass
        seen: dict = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("/" + first + "_kernel_time"):
                shape = next(iter(e["args"]["input_type_shape"][0].values()))
                seen.setdefault(e["name"].split("/")[1], []).append(shape[0])
        return max(seen.values(), key=len)   # the loop's instance (the polish's runs pnp_polish = 0 times)

    net, dct = batches(den.graph.node[0].name or den.graph.node[0].op_type), batches(cls.graph.node[0].name)
    passes = max(iters) + 1      # the loop runs until the pass in which the last row stops
    assert len(net) == len(dct) == passes
    # each pass: the network rows that step (each with its mirror image), else one stand-in row
    assert net == [2 * max(1, sum(k < n for n in iters[:3])) for k in range(passes)]
    assert dct == [1] * passes   # its one row while it steps, then a stand-in
    assert sum(net) < 2 * 4 * passes and sum(dct) < 4 * passes   # not every row through both in every pass
