"""The recovery graph (gs_onnx.solve.recovery_graph): the whole recovery in one ONNX Loop, checked against the
host-driven path (gs_onnx.solve.lbfgs, the paper's L-BFGS: itself checked against torch.optim.LBFGS in
test_lbfgs.py) with the same plan, start latents, held-out rows and skip prior; the recovery folder
(gs-export recovery) read back and run by a client that imports only numpy and onnxruntime; bad folders refused
in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gs_onnx.generator.registry import load
from gs_onnx.io.images import load_image
from gs_onnx.physics import make, sidecar_fields
from gs_onnx.solve import Settings, make_solver
from gs_onnx.solve.methods.gs_graph import plan_inputs
from gs_onnx.solve.recovery_graph import GraphRecovery, recovery_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "gs_onnx" / "samples" / "celeba64_182638.jpg"
TINY_BEGAN = ROOT / "tests" / "fixtures" / "tiny_models" / "began"
CLIENT = ROOT / "examples" / "python" / "run_recovery.py"


def _problem(model: str, kind: str, m: int):
    man = load(model)
    op = make(kind, man.image_shape, m=m, seed=0)
    rng = np.random.default_rng(1)
    if man.image_shape[1] == 64:
        x = load_image(SAMPLE, 64, "auto").reshape(-1)
    else:  # the tiny model's own image (a truth it can represent)
        x = rng.random(man.n).astype(np.float32)
    y = (op.forward(x[None])[0] + 0.01 * rng.standard_normal(op.m)).astype(np.float32)
    sidecar = {"model": model, "image_shape": list(man.image_shape), **sidecar_fields(op)}
    return man, op, y, sidecar


def _host(y, sidecar, s, restart=None, z0=None):
    """gs-recover --optimizer lbfgs's solver on one image: (image, fields, {(restart, iteration): f}). The operator
    runs in the composed graph (--operator-on graph): the same ONNX form as in the recovery graph, so that the
    comparison is of the optimiser and the rules, not of scipy's DCT against a float32 matrix-product DFT."""
    import dataclasses

    trace = {}
    solver = make_solver("gs", y[None], sidecar, dataclasses.replace(s, operator_on="graph"))
    image, fields = solver.solve(0, y, lambda *a: None, restart=restart, z0=z0,
                                 trace=lambda r, it, z, f, h: trace.setdefault((r, it), f))
    return image, fields, trace


def _graph(man, op, y, s):
    inputs, plan = plan_inputs(man, s.cut, op, y, s, 0)
    model, values = recovery_model(man, s.cut, op, history=100)
    return GraphRecovery(model).run({**inputs, **values}), inputs, plan


def _one_ulp(z: np.ndarray, seed: int) -> np.ndarray:
    up = np.random.default_rng(seed).random(z.shape) < 0.5
    return np.nextafter(z, np.where(up, np.inf, -np.inf).astype(np.float32))


def _envelope_check(man, op, y, sidecar, s, out, inputs, iterations=20):
    """Per restart, the graph's objective over the first iterations against the host's, beside the host against
    itself from a start moved by one float32 ulp (what float32 rounding alone does to this trajectory)."""
    for r in range(len(out["score"])):
        _, _, tr = _host(y, sidecar, s, restart=r, z0=inputs["z0"][r][None])
        n = min(iterations, int(out["iterations"][r]))
        host = np.array([tr[(0, i)] for i in range(1, n + 1)])
        graph = out["objective"][:n, r]
        assert abs(graph[0] - host[0]) <= 1e-6 * abs(host[0])           # the first step: the same numbers
        _, _, tp = _host(y, sidecar, s, restart=r, z0=_one_ulp(inputs["z0"][r], r)[None])
        moved = np.array([tp[(0, i)] for i in range(1, n + 1)])
        spread = np.max(np.abs(moved - host) / np.abs(host))
        gap = np.max(np.abs(graph - host) / np.abs(host))
        assert gap <= 10 * spread + 1e-5, (r, gap, spread)


def test_fixed_budget_iterates_equal_the_host_path():
    """Shipped dcgan, c = 1, Gaussian, 2 restarts x 20 iterations (lr 0.1): per iteration the graph's objective
    equals the host's to float32 rounding, and so do the winner and the image."""
    man, op, y, sidecar = _problem("dcgan", "gaussian", 300)
    s = Settings(model="dcgan", cut=1, optimizer="lbfgs", restarts=2, max_iter=20, budget="paper", device="cpu")
    out, inputs, plan = _graph(man, op, y, s)
    image, fields, _ = _host(y, sidecar, s)
    assert plan["stopping"] == {"rule": "fixed"} and list(out["iterations"]) == [20, 20]
    assert int(out["winner"]) == fields["best_restart"]
    assert np.abs(out["image"] - image).max() < 1e-4
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    _envelope_check(man, op, y, sidecar, s, out, inputs)


def test_held_out_rule_and_skip_prior_equal_the_host_path():
    """A BEGAN with a skip source (tiny, c = 2, the DCT operator), 3 restarts, held-out stopping with patience 5,
    the skip prior on: every restart stops at the host's iteration, returns the host's best iterate, the same
    restart wins, and the image is the host's."""
    man, op, y, sidecar = _problem(str(TINY_BEGAN), "srdct", 300)
    s = Settings(model=str(TINY_BEGAN), cut=2, optimizer="lbfgs", restarts=3, max_iter=60, stop="holdout", patience=5,
                 skip_prior=0.01, device="cpu")
    out, inputs, plan = _graph(man, op, y, s)
    assert plan["skip_prior"] and inputs["prior_scale"].any() and (inputs["w"] == 0).any()
    image, fields, _ = _host(y, sidecar, s)
    assert [int(v) for v in out["iterations"]] == [r["iterations"] for r in fields["restarts"]]
    assert [int(v) for v in out["best_iteration"]] == [r["best_iteration"] for r in fields["restarts"]]
    assert int(out["winner"]) == fields["best_restart"]
    np.testing.assert_allclose(out["score"], [r["held_out"] for r in fields["restarts"]], rtol=1e-3)
    assert np.abs(out["image"] - image).max() < 1e-3
    _envelope_check(man, op, y, sidecar, s, out, inputs)


def test_the_operator_enters_as_data():
    """The DCT operator's tables are graph inputs (op_*), not constants: feeding another operator's tables gives
    another recovery; the dense Gaussian's A is the input A."""
    man, op, y, _ = _problem(str(TINY_BEGAN), "srdct", 300)
    model, values = recovery_model(man, 2, op, history=5)
    assert {"op_dct_signs", "op_dct_rows"} <= set(values)
    names = {i.name for i in model.graph.input}
    assert set(values) <= names and not {i.name for i in model.graph.initializer} & set(values)
    man2, op2, _, _ = _problem("dcgan", "gaussian", 50)
    model2, values2 = recovery_model(man2, 1, op2, history=5)
    assert set(values2) == {"A"} and np.array_equal(values2["A"], op2.matrix())


def _measure(tmp: Path) -> Path:
    from gs_onnx.cli import measure_main

    r = CliRunner().invoke(measure_main, [str(SAMPLE), "--model", "dcgan", "--ratio", "0.05", "-o",
                                          str(tmp / "meas.npy")])
    assert r.exit_code == 0, r.output
    return tmp / "meas.npy"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A recovery folder for a bundled face (dcgan, Gaussian m/n 0.05, 2 restarts x 30 iterations)."""
    from gs_onnx.cli.recovery import main

    tmp = tmp_path_factory.mktemp("recovery_folder")
    meas = _measure(tmp)
    r = CliRunner().invoke(main, ["--measurements", str(meas), "--method", "gs", "--restarts", "2", "--max-iter", "30", "-o",
                                  str(tmp / "graph")])
    assert r.exit_code == 0, r.output
    return tmp / "graph", meas


def test_folder_runs_in_a_client_with_only_numpy_and_onnxruntime(folder, tmp_path):
    """The example client (no gs_onnx import) gets gs-recover --engine recovery-graph's image, and gs-recover on
    the folder gets it too."""
    from gs_onnx.cli import recover_main

    graph, meas = folder
    iface = json.loads((graph / "recovery.json").read_text())
    assert set(iface["inputs"]) == {i.name for i in __import__("onnx").load(str(graph / "recovery.onnx")).graph.input}
    assert _imports(CLIENT) <= {"numpy", "onnxruntime"} | set(sys.stdlib_module_names)
    r = subprocess.run([sys.executable, str(CLIENT), str(graph), "--out", str(tmp_path / "client.npy")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    client = np.load(tmp_path / "client.npy")
    r = subprocess.run([sys.executable, str(CLIENT), str(graph), "--chunk", "7", "--out", str(tmp_path / "chunks.npy")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.count("iteration ") >= 4, r.stderr
    assert np.array_equal(np.load(tmp_path / "chunks.npy"), client)   # section 8's loop, run by the client
    r = CliRunner().invoke(recover_main, [str(meas), "--method", "gs", "--engine", "recovery-graph", "--restarts", "2",
                                          "--max-iter", "30", "-o", str(tmp_path / "engine"), "--no-progress"])
    assert r.exit_code == 0, r.output
    engine = np.load(tmp_path / "engine" / "recovered.npy")[0]
    assert np.abs(client - engine).max() <= 1e-6
    r = CliRunner().invoke(recover_main, [str(graph), "-o", str(tmp_path / "folder"), "--reference", str(SAMPLE)])
    assert r.exit_code == 0, r.output
    assert np.abs(np.load(tmp_path / "folder" / "recovered.npy")[0] - client).max() <= 1e-6
    rep = json.loads((tmp_path / "folder" / "report.json").read_text())
    assert rep["engine"] == "recovery-graph" and rep["images"][0]["psnr"] > 15


def _imports(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0])
    return found


def _copy(folder: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(folder, dst)
    return dst


def _rehash(d: Path, rel: str) -> None:
    import hashlib

    iface = json.loads((d / "recovery.json").read_text())
    iface["files"][rel] = hashlib.sha256((d / rel).read_bytes()).hexdigest()
    (d / "recovery.json").write_text(json.dumps(iface))


def _spoil(kind: str, d: Path) -> str:
    """Spoil a copied folder one way; returns words the error line must contain."""
    if kind == "missing":
        (d / "inputs" / "w.npy").unlink()
        return "missing"
    if kind == "altered":
        a = np.load(d / "inputs" / "y.npy")
        a[0, 0] += 1
        np.save(d / "inputs" / "y.npy", a)
        return "sha256"
    if kind == "graph":
        with open(d / "recovery.onnx", "ab") as f:
            f.write(b"\0")
        return "sha256"
    if kind in ("reshaped", "dtype"):  # consistent with recovery.json (files and spec rewritten): the graph refuses
        a = np.load(d / "inputs" / "z0.npy")
        a = a[:, :-1] if kind == "reshaped" else a.astype(np.float64)
        np.save(d / "inputs" / "z0.npy", a)
        iface = json.loads((d / "recovery.json").read_text())
        iface["inputs"]["z0"].update(dtype=str(a.dtype), shape=list(a.shape))
        (d / "recovery.json").write_text(json.dumps(iface))
        _rehash(d, "inputs/z0.npy")
        return "z0"
    if kind in ("resumed", "state", "start-shape"):  # consistent edits again: a folder that claims to continue a run
        name, value = {"resumed": ("start", np.int64(5)), "state": ("state_X", np.zeros((1, 3))),
                       "start-shape": ("start", np.zeros(2, np.int64))}[kind]
        np.save(d / "inputs" / f"{name}.npy", value)
        iface = json.loads((d / "recovery.json").read_text())
        iface["inputs"][name].update(dtype=str(value.dtype), shape=list(value.shape))
        (d / "recovery.json").write_text(json.dumps(iface))
        _rehash(d, f"inputs/{name}.npy")
        return {"resumed": "starts at 0", "state": "state_X", "start-shape": "one int64 number"}[kind]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "altered", "graph", "reshaped", "dtype", "resumed", "state",
                                  "start-shape"])
def test_bad_folders_are_refused_in_one_line(folder, tmp_path, kind):
    from gs_onnx.cli import recover_main

    d = _copy(folder[0], tmp_path / "f")
    words = _spoil(kind, d)
    r = CliRunner().invoke(recover_main, [str(d), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.output
    assert not (tmp_path / "out").exists()
    if kind in ("missing", "altered", "graph"):  # the client checks what recovery.json vouches for
        c = subprocess.run([sys.executable, str(CLIENT), str(d)], capture_output=True, text=True, timeout=120)
        assert c.returncode == 2 and c.stderr.startswith("error:") and len(c.stderr.strip().splitlines()) == 1


def test_export_refuses_what_the_graph_cannot_run(tmp_path):
    from gs_onnx.cli.recovery import main

    meas = _measure(tmp_path)
    r = CliRunner().invoke(main, ["--measurements", str(meas), "--index", "3", "-o", str(tmp_path / "g")])
    assert r.exit_code == 2 and "--index 3" in r.output
    r = CliRunner().invoke(main, ["--measurements", str(meas), "--stop", "holdout", "--patience", "0", "-o",
                                  str(tmp_path / "g")])
    assert r.exit_code == 2 and "patience" in r.output
    assert not (tmp_path / "g").exists()


def test_recovery_json_follows_its_schema(folder):
    """The shipped JSON Schema accepts what gs-export recovery writes and refuses a tampered interface."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "gs_onnx" / "schema" / "recovery.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    iface = json.loads((folder[0] / "recovery.json").read_text())
    cls(schema).validate(iface)
    for spoil in (lambda d: d["files"].update({"../x.npy": "0" * 64}), lambda d: d["inputs"]["y"].update(dtype="int8"),
                  lambda d: d["plan"]["stopping"].update(rule="refit"), lambda d: d.pop("model_sha256")):
        bad = json.loads(json.dumps(iface))
        spoil(bad)
        assert not cls(schema).is_valid(bad)


def test_adam_in_the_graph_equals_adam_on_the_host():
    """torch.optim.Adam's update inside the Loop (tiny BEGAN, c = 2, DCT operator, 2 restarts, held-out stopping,
    skip prior): the host's Adam (gs_onnx.solve.adam) stops every restart at the same iteration, returns the same
    iterate and the same image; the objective agrees per iteration to float32 rounding."""
    man, op, y, sidecar = _problem(str(TINY_BEGAN), "srdct", 300)
    s = Settings(model=str(TINY_BEGAN), cut=2, optimizer="adam", lr=0.05, restarts=2, max_iter=40, stop="holdout",
                 patience=4, skip_prior=0.01, device="cpu")
    inputs, plan = plan_inputs(man, 2, op, y, s, 0)
    assert {"beta1", "beta2", "eps", "max_iterations"} <= set(inputs) and "steps" not in inputs
    model, values = recovery_model(man, 2, op, history=100, optimizer="adam")
    out = GraphRecovery(model).run({**inputs, **values})
    image, fields, _ = _host(y, sidecar, s)
    assert [int(v) for v in out["iterations"]] == [r["iterations"] for r in fields["restarts"]]
    assert [int(v) for v in out["best_iteration"]] == [r["best_iteration"] for r in fields["restarts"]]
    assert int(out["winner"]) == fields["best_restart"] and np.abs(out["image"] - image).max() < 1e-3
    _envelope_check(man, op, y, sidecar, s, out, inputs)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_run_in_chunks_is_the_run_in_one(optimizer):
    """The loop state goes out (next_NAME) and back in (state_NAME) with start = the iterations run so far: a
    recovery run in chunks of 7 iterations (tiny BEGAN, c = 2, DCT operator, 2 restarts, held-out stopping, skip
    prior) is the one-run recovery bit for bit: image, every restart's image, iterations, returned iterate, winner,
    the objective trace concatenated; `running` is true until the last chunk."""
    from gs_onnx.solve.recovery_graph import STATE_IN, STATE_OUT

    man, op, y, _ = _problem(str(TINY_BEGAN), "srdct", 300)
    s = Settings(model=str(TINY_BEGAN), cut=2, optimizer=optimizer, lr=0.05 if optimizer == "adam" else None,
                 restarts=2, max_iter=40, stop="holdout", patience=6, skip_prior=0.01, device="cpu")
    inputs, _ = plan_inputs(man, 2, op, y, s, 0)
    model, values = recovery_model(man, 2, op, history=100, optimizer=optimizer)
    runner = GraphRecovery(model)
    whole = runner.run({**inputs, **values})
    assert not whole["running"] and int(inputs["start"]) == 0
    feed, start, trace, runs = {**inputs, **values}, 0, [], []
    while True:
        feed.update(start=np.int64(start), chunk=np.int64(7))
        out = runner.run(feed)
        trace.append(out["objective"])
        runs.append(bool(out["running"]))
        feed.update({k: out[STATE_OUT + k[len(STATE_IN):]] for k in feed if k.startswith(STATE_IN)})
        start += 7
        if not out["running"]:
            break
    assert len(runs) > 2 and runs[-1] is False and all(runs[:-1])
    for k in ("image", "images", "iterations", "best_iteration", "winner", "score"):
        assert np.array_equal(out[k], whole[k]), k
    assert np.array_equal(np.concatenate(trace), whole["objective"])
    # the same loop inside GraphRecovery.run (gs-recover's progress bar): the one run's outputs, progress per run
    seen = []
    again = runner.run({**inputs, **values}, chunk=7, progress=lambda it, budget, o: seen.append((it, budget)))
    for k in ("image", "images", "iterations", "best_iteration", "winner", "score", "objective"):
        assert np.array_equal(again[k], whole[k]), k
    assert len(seen) == len(runs) and [b for _, b in seen] == [40] * len(seen)
    assert [it for it, _ in seen] == sorted(it for it, _ in seen) and seen[-1][0] == int(whole["iterations"].max())


def test_adam_matches_torch():
    """gs_onnx.solve.adam against torch.optim.Adam on a quadratic: the same iterates."""
    torch = pytest.importorskip("torch")
    from gs_onnx.solve.adam import AdamSettings, minimize_adam_batch

    rng = np.random.default_rng(0)
    Q = rng.standard_normal((6, 6))
    Q = Q @ Q.T + np.eye(6)
    x0 = rng.standard_normal((1, 6))
    res = minimize_adam_batch(lambda rows, X: (np.einsum("bi,ij,bj->b", X, Q, X), 2 * X @ Q), x0,
                              AdamSettings(lr=0.05, iterations=50))
    p = torch.tensor(x0[0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.05)
    Qt = torch.tensor(Q)
    for _ in range(50):
        opt.zero_grad()
        (p @ Qt @ p).backward()
        opt.step()
    np.testing.assert_allclose(res[0]["x"], p.detach().numpy(), rtol=1e-10, atol=1e-12)
