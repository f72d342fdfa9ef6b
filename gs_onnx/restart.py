"""Recovery with restarts: L-BFGS-B from several CN(0,1) starts, the winner chosen by measurement error.

Each restart is its own scipy L-BFGS-B run. The winner is the restart whose clamped image best explains
the measurements, ``||A clamp(x, 0, 1) - y||`` (never the ground truth, which recovery does not know).
"""
from __future__ import annotations

import dataclasses
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


def recover(gen: CutGenerator | None, op: Operator | None, y: np.ndarray, *, restarts: int = 3,
            budget: Budget = Budget(), seed: int = 0, init: str = "cn01", z0: np.ndarray | None = None,
            callback: Callable[[int, int], None] | None = None, objective=None) -> Recovery:
    """Recover one image from its measurements ``y`` ((m,) float32) with ``restarts`` L-BFGS-B runs.

    Restart r starts from ``init`` drawn with ``np.random.default_rng([seed, r])`` (or ``z0[r]`` when
    given, shape (restarts, size)). ``callback(restart, evaluations)`` is called after every evaluation.
    ``objective`` replaces ``Objective(gen, op, y)`` by any object with the same methods (``layout``,
    ``evaluations``, ``value_and_grad``, ``image``, ``measurement_error``): the torch reference in
    ``gs_export.reference`` runs the very same optimisation this way.
    """
    t0 = time.perf_counter()
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    obj = objective if objective is not None else Objective(gen, op, y)
    results, best = [], None
    for r in range(restarts):
        x0 = z0[r] if z0 is not None else init_latent(init, obj.layout.size, np.random.default_rng([seed, r]))[0]
        start = obj.evaluations

        def fg(z, _r=r, _s=start):
            out = obj.value_and_grad(z)
            if callback:
                callback(_r, obj.evaluations - _s)
            return out

        res = minimize(fg, np.asarray(x0, dtype=np.float64), jac=True, method="L-BFGS-B",
                       options={"maxiter": budget.max_iter, "maxfun": budget.max_fun, "maxcor": budget.history,
                                "ftol": budget.ftol, "gtol": budget.gtol})
        lat = obj.layout.unpack(res.x)
        err = obj.measurement_error(lat)
        rr = RestartResult(r, float(res.fun), err, obj.evaluations - start, int(res.nit), str(res.message))
        results.append(rr)
        if best is None or err < best[0].measurement_error:
            best = (rr, lat)
    rr, lat = best
    image = np.clip(obj.image(lat)[0], 0.0, 1.0)
    return Recovery(image=image, latents={k: v[0] for k, v in lat.items()}, measurement_error=rr.measurement_error,
                    objective=rr.objective, evaluations=obj.evaluations, seconds=time.perf_counter() - t0,
                    best_restart=rr.restart, restarts=results)
