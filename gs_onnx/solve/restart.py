"""Recovery with restarts: L-BFGS-B from several CN(0,1) starts, the winner chosen by measurement error.

Each restart is its own scipy L-BFGS-B run. The winner is the restart whose clamped image best explains
the measurements, ``||A clamp(x, 0, 1) - y||`` (never the ground truth, which recovery does not know).

One path for every caller: :func:`recover_batch` runs the restarts of one or more images on any objective
(the composed engine, the per-block reference, mGANprior, the torch reference), one after another or side
by side in lockstep batches (:data:`BATCH_MODES`); :func:`run_restarts` is its one-image form and
:func:`recover` the convenience that builds the objective from a cut generator and an operator.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from ..errors import GSError
from ..generator.latent import init_latent
from .stopping import PAPER, EarlyStop, StopRule, Tracker, holdout_mask

#: How restarts and images share evaluations: ``none`` (one restart after another), ``restarts`` (each
#: image's restarts in one lockstep batch), ``images`` (every restart of every image in one batch).
BATCH_MODES = ("none", "restarts", "images")


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

    def __post_init__(self):
        for name in ("max_iter", "max_fun", "history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise GSError(f"Budget: {name} must be an integer >= 1, got {v!r}")
        for name in ("ftol", "gtol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise GSError(f"Budget: {name} must be a finite number >= 0, got {v!r}")


@dataclasses.dataclass
class RestartResult:
    """One restart: final objective, measurement error of the clamped image, evaluations, stop reason;
    under a held-out rule also the held-out loss of the point returned and the iteration it came from."""

    restart: int
    objective: float
    measurement_error: float
    evaluations: int
    iterations: int
    message: str
    held_out: float | None = None
    best_iteration: int | None = None


@dataclasses.dataclass
class Recovery:
    """The recovered image x01 (3, H, W) float32 in [0, 1] (clamped), its latents and per-restart records.

    ``seconds`` is the wall time of this image (its share of the batch when images run together);
    ``eval_seconds`` the part spent evaluating the objective (the rest is the optimiser's own work and the
    final selection), where the objective counts it.
    """

    image: np.ndarray
    latents: dict[str, np.ndarray]
    measurement_error: float
    objective: float
    evaluations: int
    seconds: float
    best_restart: int
    restarts: list[RestartResult]
    eval_seconds: float | None = None
    stop: dict | None = None
    refit: dict | None = None
    #: (K, 3, H, W) the clamped image of every restart, in order, where K >= 2 (else None): where they differ,
    #: the prior filled in what the measurements do not say (:func:`gs_onnx.metrics.disagreement`)
    restart_images: np.ndarray | None = None


#: The most L-BFGS-B runs one lockstep batch joins (each runs in a thread of its own).
MAX_LOCKSTEP_RUNS = 1024


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

    def cancel(self) -> None:
        """End every run at its next evaluation (Ctrl-C): the waiting ones at once, the one evaluating when its
        batch returns (at most one evaluation)."""
        with self.cv:
            if self.error is None:
                self.error = KeyboardInterrupt()
            self.cv.notify_all()


def minimize_lockstep(evaluate: Callable[[list[int], np.ndarray], tuple[np.ndarray, np.ndarray]],
                      x0s: list[np.ndarray], budget: Budget,
                      callback: Callable[[int, int, float], None] | None = None,
                      iteration: Callable[[int], None] | None = None) -> list[tuple[object, int]]:
    """Run one scipy L-BFGS-B per start in ``x0s``, their evaluations batched.

    ``evaluate(keys, Z)`` gets the indices of the runs asking and their points Z (k, size) float64 and
    returns (f (k,), G (k, size)). Each run keeps its own L-BFGS-B state, budget and stopping; a run's
    iterates equal those of running it alone whenever ``evaluate`` computes every row independently.
    ``callback(k, evaluations, f)`` after each evaluation of run k; ``iteration(k)`` after each iteration of
    run k; raising
    :class:`gs_onnx.solve.stopping.EarlyStop` there ends that run (its result is then None).
    Returns [(scipy OptimizeResult or None, evaluations)] in the order of ``x0s``.
    """
    lock = _Lockstep(evaluate, len(x0s))
    out: list = [None] * len(x0s)
    counts = [0] * len(x0s)

    def run(k: int) -> None:
        def fg(z):
            res = lock.call(k, z)
            counts[k] += 1
            if callback:
                callback(k, counts[k], float(res[0]))
            return res

        try:
            out[k] = minimize(fg, np.asarray(x0s[k], dtype=np.float64), jac=True, method="L-BFGS-B",
                              options=_options(budget),
                              callback=None if iteration is None else (lambda xk, _k=k: iteration(_k)))
        except EarlyStop:
            out[k] = None
        except BaseException as e:  # noqa: BLE001
            out[k] = e
        finally:
            lock.leave()

    if len(x0s) > MAX_LOCKSTEP_RUNS:
        raise GSError(f"{len(x0s)} L-BFGS-B runs in one lockstep batch (images x restarts) is above "
                      f"{MAX_LOCKSTEP_RUNS}, one thread each: lower --batch-size or --restarts, or --batch none")
    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(x0s))]
    started, failed = [], None
    for k, t in enumerate(threads):
        try:
            t.start()
        except RuntimeError as e:  # the machine refused a thread: the runs not started leave the lockstep
            failed = e
            for _ in range(len(threads) - k):
                lock.leave()
            break
        started.append(t)
    try:
        for t in started:
            t.join()
    except KeyboardInterrupt:  # stop the runs before the interpreter goes: a thread left inside ONNX Runtime
        lock.cancel()          # when Python exits aborts the process instead of publishing what finished
        for t in started:
            t.join(timeout=30)
        raise
    if failed is not None:
        raise GSError(f"could not start {len(threads)} optimiser threads ({failed}): lower --batch-size or "
                      "--restarts, or --batch none")
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return list(zip(out, counts))


def lbfgs_settings(budget: Budget, lr: float = 1.0, line_search: str | None = None):
    """The paper's torch L-BFGS for a budget: steps of up to 20 iterations (25 x 20 = the default 500),
    torch's tolerances, the budget's history."""
    from .lbfgs import LBFGSSettings

    inner = min(20, budget.max_iter)
    return LBFGSSettings(lr=lr, max_iter=inner, steps=-(-budget.max_iter // inner), history=budget.history,
                         line_search=line_search)


def _check_budget(budget: Budget, restarts: int) -> None:
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise GSError(f"restarts must be an integer >= 1, got {restarts!r}")
    if budget.max_iter < 1 or budget.max_fun < 1 or budget.history < 1:
        raise GSError(f"the budget needs max_iter, max_fun and history >= 1, got {budget}")


def start_points(init: str, size: int, seed: int, restarts: int, z0: np.ndarray | None = None) -> list[np.ndarray]:
    """Restart r starts from ``init`` drawn with ``np.random.default_rng([seed, r])`` (or ``z0[r]``)."""
    if z0 is not None:
        z0 = np.asarray(z0, dtype=np.float64).reshape(-1, size)
        if len(z0) < restarts:
            raise GSError(f"z0 has {len(z0)} start(s) for {restarts} restarts")
        return [z0[r].copy() for r in range(restarts)]
    return [np.asarray(init_latent(init, size, np.random.default_rng([seed, r]))[0], dtype=np.float64)
            for r in range(restarts)]


def recover_batch(objective, Y: np.ndarray, *, restarts: int = 3, budget: Budget = Budget(),
                  seeds=None, init: str = "cn01", z0s=None, batch: str = "none", stop: StopRule = PAPER,
                  callback: Callable[[int, int, int, float], None] | None = None, trace=None,
                  optimizer: str = "scipy", lbfgs=None) -> list[Recovery]:
    """Recover every image of ``Y`` ((B, m) float32) with ``restarts`` L-BFGS-B runs each.

    Parameters
    ----------
    objective : any GS-like objective (``layout``, ``evaluations``, ``value_and_grad``, ``image``,
        ``measurement_error``, ``with_measurements(y, w)``, ``held_out``; ``value_and_grad_batch(Z, y, w)``
        for batching): its sessions serve every image, ``objective.with_measurements(Y[i], w_i)`` gives
        image i's objective
    restarts, budget, init : per image, as :func:`run_restarts`
    seeds : one seed per image (default 0, 1, 2, ...): restart r of image i starts from
        ``init`` drawn with ``default_rng([seeds[i], r])``; image i's held-out rows come from ``seeds[i]``
    z0s : optional starts per image, each (restarts, size)
    batch : one of :data:`BATCH_MODES`; the iterates are those of ``none`` up to float32 rounding (the
        batched graphs may sum in another order)
    stop : the stopping rule (:mod:`gs_onnx.solve.stopping`; default the paper's fixed budget)
    callback : ``callback(image, restart, evaluations, f)`` after every evaluation
    trace : ``trace(image, restart, iteration, z, f, f_held)`` at every iterate (iteration 0: the start)
    optimizer : one of :data:`OPTIMIZERS`; ``lbfgs``: its :class:`gs_onnx.solve.lbfgs.LBFGSSettings` (default:
        :func:`lbfgs_settings` of ``budget``), or for ``adam`` its :class:`gs_onnx.solve.adam.AdamSettings`

    Returns
    -------
    One :class:`Recovery` per image, in order.
    """
    t0 = time.perf_counter()
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or len(Y) == 0:
        raise GSError(f"measurements must have shape (images, m) with at least one image, got {Y.shape}")
    if batch not in BATCH_MODES:
        raise GSError(f"unknown batch mode {batch!r}: choose one of {', '.join(BATCH_MODES)}")
    if optimizer not in OPTIMIZERS:
        raise GSError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if optimizer == "lbfgs" and lbfgs is None:
        lbfgs = lbfgs_settings(budget)
    if optimizer == "adam" and lbfgs is None:
        from .adam import AdamSettings

        lbfgs = AdamSettings(iterations=budget.max_iter)
    _check_budget(budget, restarts)
    B, K = len(Y), int(restarts)
    seeds = list(range(B)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != B:
        raise GSError(f"{len(seeds)} seeds for {B} images")
    m = Y.shape[1]
    Wm = np.stack([holdout_mask(m, stop.holdout, seeds[i]) for i in range(B)]) if stop.uses_holdout else None
    objs = [objective.with_measurements(Y[i], None if Wm is None else Wm[i]) for i in range(B)]
    size = objective.layout.size
    x0 = [start_points(init, size, seeds[i], K, None if z0s is None else z0s[i]) for i in range(B)]
    can_batch = hasattr(objective, "value_and_grad_batch")
    if not can_batch or (batch == "restarts" and K == 1) or (batch == "images" and B * K == 1):
        batch = "none"
    cb = callback or (lambda i, r, e, f: None)
    timed = list({id(o): o for o in objs + [getattr(objective, "_obj", objective)]}.values())
    ev_before = [getattr(o, "eval_seconds", None) for o in timed]
    watch = stop.uses_holdout or trace is not None
    trackers = [[Tracker(stop, None if trace is None else
                         (lambda it, z, f, h, _i=i, _r=r: trace(_i, _r, it, z, f, h))) for r in range(K)]
                for i in range(B)] if watch else None

    def track(i: int, rows: list[int], Z: np.ndarray, f: np.ndarray, obj) -> None:
        if trackers is not None:
            held = np.asarray(obj.held_out, dtype=np.float64).reshape(-1)
            for j, r in enumerate(rows):
                trackers[i][r].on_eval(Z[j], float(f[j]), float(held[j]))

    def on_iter(i: int, r: int) -> None:
        if trackers is not None:
            trackers[i][r].on_iter()

    runs = _optimise(objective, objs, Y, Wm, x0, budget, batch, K, cb, track, on_iter, optimizer, lbfgs)
    recs = []
    ends = [[] for _ in range(B)]  # every restart's latents, for the images of the restarts
    for i in range(B):
        results, best = [], None
        for r, (res, evals) in enumerate(runs[i]):
            if stop.uses_holdout:
                tr = trackers[i][r]
                z, fval, score = tr.best_z, tr.best_f, tr.best
                if z is None:  # no finite held-out error was ever seen (a diverging run): its last point
                    z, fval, score = np.asarray(tr._last[0], dtype=np.float64), tr._last[1], math.inf
                iters, msg = tr.iterations, tr.reason(budget.max_iter)
            else:
                z, fval, iters, msg = res.x, float(res.fun), int(res.nit), str(res.message)
                score = None
            lat = objs[i].layout.unpack(z)
            ends[i].append(lat)
            err = objs[i].measurement_error(lat)
            rr = RestartResult(r, fval, err, evals, iters, msg)
            if stop.uses_holdout:
                rr.held_out = score
                rr.best_iteration = trackers[i][r].best_iteration
            results.append(rr)
            key = err if score is None else score
            if best is None or key < best[0]:
                best = (key, rr, lat, z)
        _, rr, lat, _ = best
        recs.append(Recovery(image=np.zeros(0), latents=lat, measurement_error=rr.measurement_error,
                             objective=rr.objective, evaluations=sum(x.evaluations for x in results), seconds=0.0,
                             best_restart=rr.restart, restarts=results))
    if stop.name == "refit":
        _refit(objective, Y, recs, x0, budget, optimizer, lbfgs)
    for i, rec in enumerate(recs):
        rec.image = np.clip(objs[i].image(rec.latents)[0], 0.0, 1.0)
        if len(ends[i]) >= 2:
            rec.restart_images = np.stack([np.clip(objs[i].image(lat)[0], 0.0, 1.0) for lat in ends[i]])
            rec.restart_images[rec.best_restart] = rec.image  # after a refit, the winner's refitted image
        rec.latents = {k: v[0] for k, v in rec.latents.items()}
        rec.stop = stop.describe()
    wall = time.perf_counter() - t0
    ev_after = [getattr(o, "eval_seconds", None) for o in timed]
    if all(v is not None for v in ev_after + ev_before):
        spent = sum(a - b for a, b in zip(ev_after, ev_before))
        for rec in recs:
            rec.eval_seconds = spent / B
    for rec in recs:
        rec.seconds = wall / B
    return recs


#: Optimisers behind ``gs-recover --optimizer``: scipy's L-BFGS-B (the reference), the paper's torch L-BFGS
#: semantics, batched (:mod:`gs_onnx.solve.lbfgs`), and Adam (:mod:`gs_onnx.solve.adam`).
OPTIMIZERS = ("scipy", "lbfgs", "adam")


def _run(evaluate, starts: list[np.ndarray], budget: Budget, on_eval, on_iter, optimizer: str, lbfgs=None,
         device: str = "cpu"):
    """One optimiser over ``starts`` (their evaluations batched): [(result, evaluations)] in order; result
    has ``x``, ``fun``, ``nit``, ``message`` (None where a stopping rule ended the run)."""
    if optimizer == "scipy":
        return minimize_lockstep(evaluate, starts, budget, on_eval, on_iter)
    from types import SimpleNamespace

    from .lbfgs import minimize_batch

    counts = [0] * len(starts)

    def ev(rows, X):
        out = evaluate(rows, X)
        for j, r in enumerate(rows):
            counts[r] += 1
            on_eval(r, counts[r], float(out[0][j]))
        return out

    if optimizer == "adam":
        from .adam import minimize_adam_batch

        res = minimize_adam_batch(ev, np.stack(starts), lbfgs, iteration=lambda r, x, f: on_iter(r))
        return [(None if r["message"] == "stopped by the stopping rule" else
                 SimpleNamespace(x=r["x"], fun=r["fun"], nit=r["nit"], message=r["message"]), counts[k])
                for k, r in enumerate(res)]
    # the history products run where the engine runs: numpy BLAS on the CPU, ONNX Runtime on a GPU
    res = minimize_batch(ev, np.stack(starts), lbfgs, iteration=lambda r, x, f: on_iter(r),
                         algebra="ort" if device == "cuda" else "numpy", device=device)
    return [(None if r["message"] == "stopped by the stopping rule" else
             SimpleNamespace(x=r["x"], fun=r["fun"], nit=r["nit"], message=r["message"]), counts[k])
            for k, r in enumerate(res)]


def _optimise(objective, objs, Y, Wm, x0, budget, batch, K, cb, track, on_iter, optimizer="scipy", lbfgs=None):
    """The optimiser runs of every (image, restart), as the batch mode says: [[(result, evaluations)] per
    restart] per image (result None where a stopping rule ended the run)."""
    B = len(objs)
    device = getattr(getattr(objective, "engine", None), "device_name", "cpu")

    def run(*a):
        return _run(*a, device=device)
    if batch == "images":
        def evaluate(keys, Z):
            rows = [k // K for k in keys]
            f, g = objective.value_and_grad_batch(Z, y=Y[rows], w=None if Wm is None else Wm[rows])
            for i in sorted(set(rows)):
                sel = [j for j, k in enumerate(keys) if k // K == i]
                track(i, [keys[j] % K for j in sel], Z[sel], f[sel], _Rows(objective, sel))
            return f, g

        flat = run(evaluate, [x for xs in x0 for x in xs], budget, lambda k, ev, f: cb(k // K, k % K, ev, f),
                    lambda k: on_iter(k // K, k % K), optimizer, lbfgs)
        return [flat[i * K:(i + 1) * K] for i in range(B)]
    runs = []
    for i in range(B):
        o = objs[i]
        if batch == "restarts":
            def evaluate(keys, Z, _o=o, _i=i):
                f, g = _o.value_and_grad_batch(Z)
                track(_i, list(keys), Z, f, _o)
                return f, g

            runs.append(run(evaluate, x0[i], budget, lambda k, ev, f, _i=i: cb(_i, k, ev, f),
                             lambda k, _i=i: on_iter(_i, k), optimizer, lbfgs))
            continue
        out = []
        for r in range(K):
            def evaluate(keys, Z, _o=o, _i=i, _r=r):
                f, g = _o.value_and_grad(Z[0])
                track(_i, [_r], Z, np.array([f]), _o)
                return np.array([f]), g[None]

            out += run(evaluate, [x0[i][r]], budget, lambda k, ev, f, _i=i, _r=r: cb(_i, _r, ev, f),
                        lambda k, _i=i, _r=r: on_iter(_i, _r), optimizer, lbfgs)
        runs.append(out)
    return runs


class _Rows:
    """The held-out losses of some rows of the last batched evaluation."""

    def __init__(self, obj, rows):
        self.held_out = np.asarray(obj.held_out).reshape(-1)[rows]


def _refit(objective, Y, recs, x0, budget, optimizer, lbfgs) -> None:
    """``refit``: each image's winning restart again from its start, on all measurements, for as many
    iterations as it took to reach its best held-out error."""
    for i, rec in enumerate(recs):
        win = rec.restarts[rec.best_restart]
        its = max(1, int(getattr(win, "best_iteration", win.iterations)))
        b = dataclasses.replace(budget, max_iter=its, max_fun=max(1, int(round(its * budget.max_fun / budget.max_iter))))
        o = objective.with_measurements(Y[i])

        def evaluate(keys, Z, _o=o):
            f, g = _o.value_and_grad(Z[0])
            return np.array([f]), g[None]

        lb = None if lbfgs is None else dataclasses.replace(lbfgs, max_iter=min(lbfgs.max_iter, its),
                                                           steps=-(-its // min(lbfgs.max_iter, its)))
        ((res, evals),) = _run(evaluate, [x0[i][rec.best_restart]], b, lambda k, ev, f: None, lambda k: None,
                               optimizer, lb, getattr(getattr(objective, "engine", None), "device_name", "cpu"))
        rec.latents = o.layout.unpack(res.x)
        rec.objective = float(res.fun)
        rec.measurement_error = o.measurement_error(rec.latents)
        rec.evaluations += evals
        rec.refit = {"iterations": int(res.nit), "evaluations": evals}


def run_restarts(objective, *, restarts: int = 3, budget: Budget = Budget(), seed: int = 0, init: str = "cn01",
                 z0: np.ndarray | None = None, callback: Callable[[int, int], None] | None = None,
                 batch: bool = False, stop: StopRule = PAPER) -> Recovery:
    """Recover one image with ``restarts`` L-BFGS-B runs of ``objective`` (which holds its measurements).

    Restart r starts from ``init`` drawn with ``np.random.default_rng([seed, r])`` (or ``z0[r]`` when
    given, shape (restarts, size)). ``callback(restart, evaluations)`` is called after every evaluation.
    With ``batch`` (and an objective that has ``value_and_grad_batch``) the restarts run side by side
    (:func:`minimize_lockstep`): one batch through the graphs per step, each restart with its own L-BFGS-B
    state and stopping; the iterates are those of the sequential runs up to float32 rounding. ``stop``: the
    stopping rule (:mod:`gs_onnx.solve.stopping`).
    """
    cb = None if callback is None else (lambda i, r, e, f: callback(r, e))
    # one image: Y only gives m (only the "images" mode reads it, and one image batches its restarts)
    m = int(getattr(objective, "m", 1))
    return recover_batch(_Fixed(objective), np.zeros((1, m), np.float32), restarts=restarts, budget=budget,
                         seeds=[seed], init=init, z0s=None if z0 is None else [z0],
                         batch="restarts" if batch else "none", stop=stop, callback=cb)[0]


class _Fixed:
    """An objective whose measurements are already set, for :func:`run_restarts`."""

    def __init__(self, obj):
        self.__dict__["_obj"] = obj

    def __getattr__(self, name):
        return getattr(self._obj, name)

    def with_measurements(self, y, w=None):
        if w is None:
            return self._obj
        return self._obj.with_measurements(np.asarray(self._obj.y).reshape(-1), w)


def recover(gen, op, y: np.ndarray, *, restarts: int | None = None, budget: Budget | None = None, seed: int = 0,
            init: str = "cn01", z0: np.ndarray | None = None, callback: Callable[[int, int], None] | None = None,
            batch: bool = False, engine: str = "auto", stop: StopRule | str = "auto",
            skip_prior: float | str | None = "auto") -> Recovery:
    """Recover one image from its measurements ``y`` ((m,) float32) with the cut generator ``gen`` and the
    operator ``op``: :func:`run_restarts` on the objective that ``engine`` builds (:data:`gs_onnx.solve.objective.ENGINES`;
    ``auto``: the composed engine where available). The objective's sessions are kept on ``gen`` for the
    next call with the same operator.

    ``stop="auto"`` (and ``restarts``/``budget`` None) take the model's validated stopping plan for this
    operator (:func:`gs_onnx.solve.stopping.stopping_plan`, what ``gs-recover --budget auto`` runs);
    ``stop=gs_onnx.solve.stopping.PAPER`` with the default budget is the paper's fixed 500 iterations.
    ``skip_prior``: the prior on a skip source the cut frees (:mod:`gs_onnx.solve.skipprior`): ``"auto"`` the
    model's recommended weight (began: 0.002), a number that weight, 0 none: the same as ``gs-recover``.
    """
    from .objective import objective_for
    from .stopping import rule_from, stopping_plan

    from ..physics.base import as_operator

    op = as_operator(op, gen.image_shape)
    plan = stopping_plan(gen.manifest.recommended, (op.describe() or {}).get("type"))
    if restarts is not None:
        _check_budget(budget or Budget(), restarts)
    if isinstance(stop, str):
        if stop != "auto":
            raise GSError(f"stop must be 'auto' or a StopRule, got {stop!r}")
        stop = rule_from(plan)
    restarts = int(plan.get("restarts", 3)) if restarts is None else restarts
    if budget is None:
        its = int(plan.get("max_iter", 500))
        budget = Budget(max_iter=its, max_fun=int(its * 1.25))
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise GSError(f"y must be a 1-D vector of the operator's {op.m} measurements, got shape {y.shape}")
    if y.size != op.m:
        raise GSError(f"y has {y.size} measurements but the operator has m = {op.m}")
    if not np.isfinite(y).all():
        raise GSError("y contains NaN or Inf")
    from .skipprior import prior_for, with_skip_prior

    prior = prior_for(gen.manifest, gen.cut_index, skip_prior, device="cpu", threads=gen.threads)
    obj = with_skip_prior(objective_for(gen, op, engine=engine), prior).with_measurements(y)
    return run_restarts(obj, restarts=restarts, budget=budget, seed=seed, init=init, z0=z0, callback=callback,
                        batch=batch, stop=stop)
