"""Recovery with restarts: L-BFGS-B from several CN(0,1) starts, the winner chosen by measurement error.

Each restart is its own scipy L-BFGS-B run. The winner is the restart whose clamped image best explains
the measurements, ``||A clamp(x, 0, 1) - y||`` (never the ground truth, which recovery does not know).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from .cut import CutGenerator
from .latent import init_latent
from .objective import Objective
from .operator import Operator


@dataclasses.dataclass(frozen=True)
class Budget:
    """The optimiser's budget per restart: scipy L-BFGS-B ``maxiter``, ``maxfun`` and history ``m``.

    The default (500 iterations, 625 evaluations, history 100) matches the paper's torch L-BFGS budget
    of 25 outer steps of up to 20 inner iterations.
    """

    max_iter: int = 500
    max_fun: int = 625
    history: int = 100
    ftol: float = 1e-12
    gtol: float = 1e-9


@dataclasses.dataclass
class RestartResult:
    """One restart: final objective, measurement error of the clamped image, evaluations, stop reason."""

    restart: int
    objective: float
    measurement_error: float
    evaluations: int
    iterations: int
    message: str


@dataclasses.dataclass
class Recovery:
    """The recovered image x01 (3, H, W) float32 in [0, 1] (clamped), its latents and per-restart records."""

    image: np.ndarray
    latents: dict[str, np.ndarray]
    measurement_error: float
    objective: float
    evaluations: int
    seconds: float
    best_restart: int
    restarts: list[RestartResult]


def _options(budget: Budget) -> dict:
    return {"maxiter": budget.max_iter, "maxfun": budget.max_fun, "maxcor": budget.history,
            "ftol": budget.ftol, "gtol": budget.gtol}


class _Lockstep:
    """Joins the evaluation requests of several L-BFGS-B runs into one batch.

    Each run lives in its own thread and calls :meth:`call` from its objective; the thread whose request
    completes the set of active runs evaluates the whole batch and wakes the others. A run that stops
    calls :meth:`leave`, so the remaining runs go on in smaller batches with their own stopping rules.
    """

    def __init__(self, evaluate: Callable[[list[int], np.ndarray], tuple[np.ndarray, np.ndarray]], runs: int):
        self.evaluate, self.active = evaluate, runs
        self.cv = threading.Condition()
        self.pending: dict[int, np.ndarray] = {}
        self.done: dict[int, tuple[float, np.ndarray]] = {}
        self.error: BaseException | None = None

    def _maybe_run(self) -> None:
        if not self.pending or len(self.pending) < self.active or self.error is not None:
            return
        keys = sorted(self.pending)
        z = np.stack([self.pending.pop(k) for k in keys])
        try:
            f, g = self.evaluate(keys, z)
            for i, k in enumerate(keys):
                self.done[k] = (float(f[i]), np.array(g[i], dtype=np.float64))
        except BaseException as e:  # noqa: BLE001 - handed to every waiting run, re-raised by the caller
            self.error = e
        self.cv.notify_all()

    def call(self, key: int, z: np.ndarray) -> tuple[float, np.ndarray]:
        with self.cv:
            self.pending[key] = np.asarray(z, dtype=np.float64)
            self._maybe_run()
            while key not in self.done and self.error is None:
                self.cv.wait()
            if self.error is not None:
                raise self.error
            return self.done.pop(key)

    def leave(self) -> None:
        with self.cv:
            self.active -= 1
            self._maybe_run()


def minimize_lockstep(evaluate: Callable[[list[int], np.ndarray], tuple[np.ndarray, np.ndarray]],
                      x0s: list[np.ndarray], budget: Budget,
                      callback: Callable[[int, int], None] | None = None) -> list[tuple[object, int]]:
    """Run one scipy L-BFGS-B per start in ``x0s``, their evaluations batched.

    ``evaluate(keys, Z)`` gets the indices of the runs asking and their points Z (k, size) float64 and
    returns (f (k,), G (k, size)). Each run keeps its own L-BFGS-B state, budget and stopping; a run's
    iterates equal those of running it alone whenever ``evaluate`` computes every row independently.
    Returns [(scipy OptimizeResult, evaluations)] in the order of ``x0s``.
    """
    lock = _Lockstep(evaluate, len(x0s))
    out: list = [None] * len(x0s)
    counts = [0] * len(x0s)

    def run(k: int) -> None:
        def fg(z):
            res = lock.call(k, z)
            counts[k] += 1
            if callback:
                callback(k, counts[k])
            return res

        try:
            out[k] = minimize(fg, np.asarray(x0s[k], dtype=np.float64), jac=True, method="L-BFGS-B",
                              options=_options(budget))
        except BaseException as e:  # noqa: BLE001
            out[k] = e
        finally:
            lock.leave()

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(x0s))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return list(zip(out, counts))


def recover(gen: CutGenerator | None, op: Operator | None, y: np.ndarray, *, restarts: int = 3,
            budget: Budget = Budget(), seed: int = 0, init: str = "cn01", z0: np.ndarray | None = None,
            callback: Callable[[int, int], None] | None = None, objective=None, batch: bool = False) -> Recovery:
    """Recover one image from its measurements ``y`` ((m,) float32) with ``restarts`` L-BFGS-B runs.

    Restart r starts from ``init`` drawn with ``np.random.default_rng([seed, r])`` (or ``z0[r]`` when
    given, shape (restarts, size)). ``callback(restart, evaluations)`` is called after every evaluation.
    ``objective`` replaces ``Objective(gen, op, y)`` by any object with the same methods (``layout``,
    ``evaluations``, ``value_and_grad``, ``image``, ``measurement_error``): the torch reference in
    ``gs_export.reference`` runs the very same optimisation this way.

    With ``batch`` (and an objective that has ``value_and_grad_batch``) the restarts run side by side
    (:func:`minimize_lockstep`): one batch through the graphs per step, each restart with its own
    L-BFGS-B state and stopping. The iterates are those of the sequential runs up to float32 rounding.
    """
    t0 = time.perf_counter()
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    obj = objective if objective is not None else Objective(gen, op, y)
    x0s = [np.asarray(z0[r] if z0 is not None else
                      init_latent(init, obj.layout.size, np.random.default_rng([seed, r]))[0], dtype=np.float64)
           for r in range(restarts)]
    if batch and restarts > 1 and hasattr(obj, "value_and_grad_batch"):
        def evaluate(keys, z):
            return obj.value_and_grad_batch(z)

        runs = minimize_lockstep(evaluate, x0s, budget, callback)
    else:
        runs = []
        for r in range(restarts):
            start = obj.evaluations

            def fg(z, _r=r, _s=start):
                out = obj.value_and_grad(z)
                if callback:
                    callback(_r, obj.evaluations - _s)
                return out

            res = minimize(fg, x0s[r], jac=True, method="L-BFGS-B", options=_options(budget))
            runs.append((res, obj.evaluations - start))
    results, best = [], None
    for r, (res, evals) in enumerate(runs):
        lat = obj.layout.unpack(res.x)
        err = obj.measurement_error(lat)
        rr = RestartResult(r, float(res.fun), err, evals, int(res.nit), str(res.message))
        results.append(rr)
        if best is None or err < best[0].measurement_error:
            best = (rr, lat)
    rr, lat = best
    image = np.clip(obj.image(lat)[0], 0.0, 1.0)
    return Recovery(image=image, latents={k: v[0] for k, v in lat.items()}, measurement_error=rr.measurement_error,
                    objective=rr.objective, evaluations=obj.evaluations, seconds=time.perf_counter() - t0,
                    best_restart=rr.restart, restarts=results)
