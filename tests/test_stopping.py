"""Held-out stopping (gs_onnx.solve.stopping) against known truths: a synthetic least-squares problem whose best
iterate is known, exact batch/single equality with a row-independent objective, seeds, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gs_onnx import cli
from gs_onnx.engine.cut import CutGenerator
from gs_onnx.errors import GSError
from gs_onnx.generator.latent import LatentLayout
from gs_onnx.physics.datafit import data_term
from gs_onnx.solve.objective import Objective
from gs_onnx.physics import GaussianOperator
from gs_onnx.solve.restart import Budget, recover_batch
from gs_onnx.solve.stopping import PAPER, StopRule, holdout_mask

from test_cli import IMG_A, IMG_B, assert_one_line_error, invoke


class LinearObjective:
    """f(z) = sum_j w_j (A z - y)_j^2 / sum_j w_j: an analytic objective with the recover_batch protocol,
    every row computed on its own (so batched runs equal single runs bit for bit)."""

    def __init__(self, A, y, w=None):
        self.A, self.y, self.w = A, np.asarray(y, np.float32).reshape(1, -1), w
        self.layout = LatentLayout({"z": (A.shape[1],)})
        self.evaluations, self.held_out = 0, None

    def with_measurements(self, y, w=None):
        return LinearObjective(self.A, y, w)

    def value_and_grad_batch(self, Z, y=None, w=None):
        Z = np.atleast_2d(Z)
        self.evaluations += len(Z)
        Y = np.broadcast_to(self.y, (len(Z), self.y.shape[1])) if y is None else np.asarray(y, np.float32)
        m = self.y.shape[1]
        W = self.w if w is None else w
        W = None if W is None else np.broadcast_to(np.asarray(W, np.float32).reshape(-1, m), (len(Z), m))
        out = [data_term((Z[k:k + 1] @ self.A.T - Y[k:k + 1]).astype(np.float32), None if W is None else W[k:k + 1])
               for k in range(len(Z))]
        self.held_out = np.array([o[1][0] for o in out])
        return np.array([o[0][0] for o in out]), np.stack([o[2][0].astype(np.float64) @ self.A for o in out])

    def value_and_grad(self, z):
        f, g = self.value_and_grad_batch(np.asarray(z)[None])
        return float(f[0]), g[0]

    def image(self, lat):
        return lat["z"][:, None, None, :]

    def measurement_error(self, lat):
        return float(np.linalg.norm(lat["z"] @ self.A.T - self.y))


def _problem(seed=0, images=1):
    """An ill-conditioned underdetermined problem: L-BFGS fits the signal first, then the noise, so the error
    to the truth falls and then rises again along the iterations (early stopping is the regulariser)."""
    rng = np.random.default_rng(seed)
    n, m = 400, 150
    t = np.linspace(0, 1, n)
    truth = np.sin(6 * t) + 0.5 * np.cos(17 * t)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, m)))
    A = (U * np.logspace(0, -3, m)) @ V.T
    Y = np.stack([A @ truth + 0.01 * rng.standard_normal(m) for _ in range(images)])
    return LinearObjective(A, Y[0]), Y, truth


def test_rule_stops_near_the_known_optimum():
    obj, Y, truth = _problem()
    path = []
    rec = recover_batch(obj, Y, restarts=1, budget=Budget(300, 400), init="zero",
                        stop=StopRule("holdout", 0.1, 10**6),
                        trace=lambda i, r, it, z, f, h: path.append((it, float(np.linalg.norm(z - truth)))))
    errs = np.array([e for _, e in path])
    best_true = errs.min()
    assert errs[-1] > 1.2 * best_true  # running to the budget overfits the noise
    for patience in (10, 30):
        rec = recover_batch(obj, Y, restarts=1, budget=Budget(300, 400), init="zero",
                            stop=StopRule("holdout", 0.1, patience))[0]
        rr = rec.restarts[0]
        err = np.linalg.norm(rec.latents["z"].ravel() - truth)
        assert err <= 1.01 * best_true, (patience, err, best_true)
        assert rr.iterations == rr.best_iteration + patience  # stopped exactly `patience` past the best
        assert "did not improve" in rr.message
        assert rr.iterations < 300


def test_held_out_rows_never_enter_the_objective_blocks_path(shipped):
    """The per-block reference objective: changing y on the held-out rows changes the held-out loss only."""
    op = GaussianOperator(400, shipped.n, seed=1)
    rng = np.random.default_rng(0)
    y = rng.standard_normal(400).astype(np.float32)
    w = holdout_mask(400, 0.1, seed=3)
    obj = Objective(CutGenerator(shipped, 1, "cpu"), op, y, w)
    z = rng.standard_normal(obj.layout.size) * 0.5
    f1, g1 = obj.value_and_grad(z)
    h1 = obj.held_out.copy()
    y2 = y.copy()
    y2[w == 0] += 3.0
    obj2 = obj.with_measurements(y2, w)
    f2, g2 = obj2.value_and_grad(z)
    assert f1 == f2
    np.testing.assert_array_equal(g1, g2)
    assert obj2.held_out[0] > h1[0] + 1.0


def test_same_seeds_give_the_same_stops():
    obj, Y, _ = _problem(images=2)
    runs = [recover_batch(obj, Y, restarts=2, budget=Budget(200, 260), seeds=[4, 5],
                          stop=StopRule("holdout", 0.1, 15)) for _ in range(2)]
    for a, b in zip(*runs):
        assert [r.iterations for r in a.restarts] == [r.iterations for r in b.restarts]
        assert a.best_restart == b.best_restart
        np.testing.assert_array_equal(a.latents["z"], b.latents["z"])
    # and another seed holds out other rows
    assert not np.array_equal(holdout_mask(150, 0.1, 4), holdout_mask(150, 0.1, 5))


@pytest.mark.parametrize("mode", ["restarts", "images"])
def test_batch_equals_single_runs(mode):
    """Every image's restarts (or every restart of every image) in one lockstep batch: the same stops, winners
    and latents as one restart after another, bit for bit (the objective computes each row on its own)."""
    obj, Y, _ = _problem(images=3)
    rule = StopRule("holdout", 0.1, 12)
    one = recover_batch(obj, Y, restarts=2, budget=Budget(150, 200), seeds=[0, 1, 2], stop=rule, batch="none")
    many = recover_batch(obj, Y, restarts=2, budget=Budget(150, 200), seeds=[0, 1, 2], stop=rule, batch=mode)
    for a, b in zip(one, many):
        assert [(r.iterations, r.best_iteration, r.held_out) for r in a.restarts] == \
               [(r.iterations, r.best_iteration, r.held_out) for r in b.restarts]
        assert a.best_restart == b.best_restart
        np.testing.assert_array_equal(a.latents["z"], b.latents["z"])


def test_refit_runs_the_best_iteration_count_on_all_rows():
    obj, Y, _ = _problem()
    rule = StopRule("refit", 0.1, 10)
    rec = recover_batch(obj, Y, restarts=1, budget=Budget(300, 400), seeds=[7], stop=rule)[0]
    k = rec.restarts[0].best_iteration
    assert rec.refit["iterations"] == k
    ref = recover_batch(obj, Y, restarts=1, budget=Budget(k, int(round(k * 400 / 300))), seeds=[7], stop=PAPER)[0]
    np.testing.assert_array_equal(rec.latents["z"], ref.latents["z"])


def test_holdout_mask_is_seeded_and_sane():
    w = holdout_mask(1000, 0.05, 3)
    assert w.dtype == np.float32 and int((w == 0).sum()) == 50
    np.testing.assert_array_equal(w, holdout_mask(1000, 0.05, 3))
    assert int((holdout_mask(10, 0.01, 0) == 0).sum()) == 1  # at least one row
    with pytest.raises(GSError, match="leaves none"):
        holdout_mask(3, 0.9, 0)
    for bad in ({"holdout": 1.5}, {"holdout": 0.0}, {"patience": 0}, {"name": "sometimes"}):
        with pytest.raises(GSError):
            StopRule(**{"name": "holdout", **bad})


@pytest.fixture(scope="module")
def meas(dcgan_meas_010):
    return dcgan_meas_010


def test_recover_reports_the_rule_and_each_restarts_stop(tmp_path, meas):
    out = tmp_path / "auto"
    r = invoke(cli.recover_main, [meas, "--method", "gs", "--stop", "holdout", "--max-iter", "60", "--patience", "5",
                                  "--restarts", "2", "-o", out])
    assert r.exit_code == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["stopping"] == {"rule": "holdout", "holdout": 0.1, "patience": 5}
    assert rep["budget"]["plan"] == "auto"
    for img in rep["images"]:
        for rr in img["restarts"]:
            assert rr["best_iteration"] is not None and rr["held_out"] is not None
            assert rr["iterations"] <= 60
            assert ("did not improve" in rr["message"]) == (rr["iterations"] == rr["best_iteration"] + 5)
        held = [rr["held_out"] for rr in img["restarts"]]
        assert img["best_restart"] == int(np.argmin(held))  # the winner: the lowest held-out error
    out = tmp_path / "paper"
    r = invoke(cli.recover_main, [meas, "--method", "gs", "--budget", "paper", "--max-iter", "5", "--restarts", "1",
                                  "-o", out])
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "report.json").read_text())["stopping"] == {"rule": "fixed"}
    # --budget auto on the shipped dcgan: gs's validated plan, 1 restart x 100 iterations on every measurement
    out = tmp_path / "auto-plan"
    r = invoke(cli.recover_main, [meas, "--method", "gs", "--max-iter", "3", "-o", out])
    rep = json.loads((out / "report.json").read_text())
    assert rep["stopping"] == {"rule": "fixed"} and rep["restarts"] == 1 and rep["budget"]["plan"] == "auto"
    # the Gaussian default, gs-pnp, runs the same plan with the rows held out (they choose its candidate)
    out = tmp_path / "default"
    r = invoke(cli.recover_main, [meas, "--max-iter", "3", "-o", out])
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"] == "gs-pnp" and rep["stopping"]["rule"] == "holdout" and rep["restarts"] == 1


@pytest.mark.parametrize("args, needle", [
    (["--stop", "holdout", "--holdout", "1.5"], "held-out fraction"),
    (["--holdout", "0.1"], "need a held-out rule"),  # the dcgan plan is a fixed budget
    (["--patience", "0"], "--patience must be >= 1"),
    (["--budget", "paper", "--holdout", "0.1"], "need a held-out rule"),
    (["--method", "lasso-dct", "--stop", "holdout"], "--stop does not apply"),
])
def test_bad_stopping_options_one_line(tmp_path, meas, args, needle):
    r = invoke(cli.recover_main, [meas, *args, "-o", tmp_path / "out"])
    assert_one_line_error(r, needle)
    assert not (tmp_path / "out").exists()
