"""The batched torch-semantics L-BFGS (gs_onnx.solve.lbfgs) against torch.optim.LBFGS itself, row by row, and
against its own single-row runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gs_onnx import cli
from gs_onnx.errors import GSError
from gs_onnx.solve.lbfgs import LBFGSSettings, NumpyAlgebra, OrtAlgebra, minimize_batch
from gs_onnx.solve.restart import Budget, recover_batch
from gs_onnx.solve.stopping import PAPER, StopRule

from test_cli import IMG_A, IMG_B, assert_one_line_error, invoke
from test_stopping import LinearObjective, _problem


def _problems(B: int, n: int, seed: int = 0):
    """B smooth, strongly convex, non-quadratic objectives 0.5 x'Ax - b'x + 0.05 sum x^4."""
    rng = np.random.default_rng(seed)
    As, bs = [], []
    for _ in range(B):
        M = rng.standard_normal((n, n))
        As.append(M @ M.T / n + 0.1 * np.eye(n))
        bs.append(rng.standard_normal(n))

    def evaluate(rows, X):
        fs, gs = [], []
        for r, x in zip(rows, X):
            fs.append(0.5 * x @ As[r] @ x - bs[r] @ x + 0.05 * np.sum(x ** 4))
            gs.append(As[r] @ x - bs[r] + 0.2 * x ** 3)
        return np.array(fs), np.stack(gs)

    return As, bs, evaluate


def _torch_run(A, b, x0, st: LBFGSSettings, dtype):
    torch = pytest.importorskip("torch")
    z = torch.tensor(x0, dtype=dtype, requires_grad=True)
    opt = torch.optim.LBFGS([z], lr=st.lr, max_iter=st.max_iter, history_size=st.history,
                            line_search_fn=st.line_search, tolerance_grad=st.tolerance_grad,
                            tolerance_change=st.tolerance_change)
    At, bt = torch.tensor(A, dtype=dtype), torch.tensor(b, dtype=dtype)
    evals = [0]

    def closure():
        opt.zero_grad()
        evals[0] += 1
        loss = 0.5 * z @ At @ z - bt @ z + 0.05 * (z ** 4).sum()
        loss.backward()
        return loss

    xs = []
    for _ in range(st.steps):
        opt.step(closure)
        xs.append(z.detach().double().numpy().copy())
    return xs, evals[0], opt.state[z]["n_iter"]


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize("history", [100, 4])
def test_iterates_equal_torch_lbfgs_row_by_row(line_search, history):
    """A batch of 3 rows, each a different objective: after every step() the point equals torch.optim.LBFGS's,
    and so do the evaluation and iteration counts (history 4 wraps around; float64 on both sides)."""
    torch = pytest.importorskip("torch")
    As, bs, evaluate = _problems(3, 25)
    st = LBFGSSettings(lr=0.5 if line_search is None else 1.0, max_iter=6, steps=5, history=history,
                       line_search=line_search)
    X0 = np.random.default_rng(1).standard_normal((3, 25))
    # the state after every step: run 1..steps steps (the rows are independent, so one batch per length)
    for steps in range(1, st.steps + 1):
        res = minimize_batch(evaluate, X0, LBFGSSettings(**{**st.__dict__, "steps": steps}), dtype=np.float64)
        for r in range(3):
            xs, nfev, nit = _torch_run(As[r], bs[r], X0[r], LBFGSSettings(**{**st.__dict__, "steps": steps}),
                                       torch.float64)
            np.testing.assert_allclose(res[r]["x"], xs[-1], rtol=0, atol=1e-10)
            assert (res[r]["nfev"], res[r]["nit"]) == (nfev, nit)


def test_float32_history_matches_torch_to_float32_rounding():
    """The default float32 history: as close to torch's exact (float64) iterates after 30 iterations as torch
    itself gets in float32, which is what "equal to float32 rounding" can mean once rounding has been
    amplified by 30 iterations."""
    torch = pytest.importorskip("torch")
    As, bs, evaluate = _problems(2, 40, seed=2)
    st = LBFGSSettings(lr=0.5, max_iter=10, steps=3, history=100)
    X0 = np.random.default_rng(3).standard_normal((2, 40))
    res = minimize_batch(evaluate, X0, st)
    for r in range(2):
        exact, _, _ = _torch_run(As[r], bs[r], X0[r], st, torch.float64)
        f32, _, _ = _torch_run(As[r], bs[r], X0[r].astype(np.float32), st, torch.float32)
        ours = np.linalg.norm(res[r]["x"] - exact[-1])
        torch32 = np.linalg.norm(f32[-1] - exact[-1])
        assert ours <= 2 * torch32 + 1e-6 * np.linalg.norm(exact[-1]), (ours, torch32)


@pytest.mark.parametrize("algebra", ["numpy", "ort"])
def test_batch_of_rows_equals_single_runs(algebra):
    """K rows in one batch give each row's single run: bit for bit with numpy, to float32 rounding with ONNX
    Runtime's batched MatMul."""
    _, _, evaluate = _problems(4, 30, seed=4)
    st = LBFGSSettings(lr=0.5, max_iter=8, steps=4, history=5)
    X0 = np.random.default_rng(5).standard_normal((4, 30))
    batch = minimize_batch(evaluate, X0, st, algebra=algebra)
    for r in range(4):
        one = minimize_batch(lambda rows, X, _r=r: evaluate([_r] * len(rows), X), X0[r:r + 1], st, algebra=algebra)[0]
        if algebra == "numpy":
            np.testing.assert_array_equal(batch[r]["x"], one["x"])
        else:
            np.testing.assert_allclose(batch[r]["x"], one["x"], rtol=1e-5, atol=1e-6)
        assert batch[r]["nfev"] == one["nfev"]


def test_ort_algebra_products_equal_numpy():
    rng = np.random.default_rng(0)
    a, b = NumpyAlgebra(3, 50, 4), OrtAlgebra(3, 50, 4, "cpu")
    S = rng.standard_normal((4, 50)).astype(np.float32)
    Y = rng.standard_normal((4, 50)).astype(np.float32)
    rows, slots = np.array([0, 1, 2, 1]), np.array([0, 0, 3, 2])
    a.write(rows, slots, S, Y)
    b.write(rows, slots, S, Y)
    V = rng.standard_normal((2, 3, 50))
    np.testing.assert_allclose(b.project(np.array([0, 1]), V), a.project(np.array([0, 1]), V), rtol=1e-5, atol=1e-5)
    C = rng.standard_normal((2, 8))
    np.testing.assert_allclose(b.combine(np.array([1, 2]), C), a.combine(np.array([1, 2]), C), rtol=1e-5, atol=1e-5)


def test_restarts_and_winner_rule_unchanged():
    """recover_batch with the batched L-BFGS: the paper's rule still picks the lowest measurement error;
    with a held-out rule the restarts stop on the held-out error as with scipy."""
    obj, Y, _ = _problem(images=2)
    b = Budget(60, 75)
    recs = recover_batch(obj, Y, restarts=3, budget=b, seeds=[0, 1], stop=PAPER, optimizer="lbfgs", batch="images")
    for rec in recs:
        errs = [r.measurement_error for r in rec.restarts]
        assert rec.best_restart == int(np.argmin(errs))
        assert all(r.iterations <= 60 for r in rec.restarts)
    held = recover_batch(obj, Y, restarts=2, budget=Budget(300, 400), seeds=[0, 1],
                         stop=StopRule("holdout", 0.1, 8), optimizer="lbfgs", batch="images")
    for rec in held:
        for r in rec.restarts:
            assert r.iterations == r.best_iteration + 8 or r.iterations >= 299
        assert rec.best_restart == int(np.argmin([r.held_out for r in rec.restarts]))


def test_settings_are_checked():
    for bad in ({"lr": 0}, {"max_iter": 0}, {"history": 0}, {"line_search": "armijo"}):
        with pytest.raises(GSError):
            LBFGSSettings(**bad)


@pytest.fixture(scope="module")
def meas(dcgan_meas_010):
    return dcgan_meas_010


def test_gs_recover_with_the_batched_lbfgs(tmp_path, meas):
    out = tmp_path / "out"
    r = invoke(cli.recover_main, [meas, "--optimizer", "lbfgs", "--budget", "paper", "--max-iter", "40",
                                  "--restarts", "2", "-o", out, "--reference", IMG_A, "--reference", IMG_B])
    assert r.exit_code == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["budget"]["lbfgs"]["lr"] == 0.1 and rep["budget"]["lbfgs"]["history"] == 100
    assert rep["budget"]["lbfgs"]["max_iter"] == 20 and rep["budget"]["lbfgs"]["steps"] == 2
    for img in rep["images"]:
        assert img["psnr"] > 15
        assert all(rr["iterations"] <= 40 for rr in img["restarts"])


@pytest.mark.parametrize("args, needle", [
    (["--lr", "0.5"], "--lr and --line-search apply to --optimizer lbfgs"),
    (["--optimizer", "lbfgs", "--lr", "-1"], "--lr must be > 0"),
])
def test_bad_optimizer_options_one_line(tmp_path, meas, args, needle):
    r = invoke(cli.recover_main, [meas, *args, "-o", tmp_path / "out"])
    assert_one_line_error(r, needle)
