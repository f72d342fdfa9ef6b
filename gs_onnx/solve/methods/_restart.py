"""What gs, gs-tv and mganprior share: L-BFGS-B (or the paper's L-BFGS, or Adam) from start latents, with
restarts, the model's stopping plan and the winner by measurement error (:func:`gs_onnx.solve.restart.recover_batch`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import GSError
from ...generator.manifest import Manifest
from ..settings import (OPTIMIZER_WORDS, WARM_INIT, Settings, adam_settings, cut_for, default_batch, default_batch_size,
                        lbfgs_lr, model_for, recovery_plan, unvalidated_note)

#: The settings every restart method reads.
RESTART_SETTINGS = frozenset({"model", "cut", "restarts", "max_iter", "max_fun", "init", "budget", "stop", "holdout",
                              "patience", "optimizer", "lr", "line_search"})


def skip_prior_for(man: Manifest, cut: int, s: Settings):
    """The skip-source prior gs runs (:mod:`gs_onnx.solve.skipprior`): ``--skip-prior W``, else the weight the
    model's manifest recommends (``recommended.skip_prior.weight``, chosen on validation images), else none."""
    from ..skipprior import prior_for

    return prior_for(man, cut, s.skip_prior, device="cpu", threads=s.threads)


#: L-BFGS-B iterations of the Lasso-DCT warm start (``--init lasso``, :data:`gs_onnx.solve.settings.WARM_INIT`).
WARM_ITERS = 100


def lasso_warm_start(solver: "RestartSolver", y: np.ndarray, restart: int, seed: int) -> np.ndarray:
    """The start of ``restart`` for ``--init lasso``: the latent whose image best fits the Lasso-DCT estimate."""
    from ..lasso import lasso_dct
    from ...generator.latent import init_latent
    from ..objective import make_objective
    from ...physics import IdentityOperator
    from ..restart import Budget, run_restarts

    man = solver.man
    x_l = np.clip(lasso_dct(solver.op, y, tuple(man.image_shape)).image, 0.0, 1.0).astype(np.float32)
    key = (solver.cut, solver.s.device, solver.s.threads)
    fit = getattr(solver, "_warm_fit", None)
    if fit is None or fit[0] != key:
        fit = (key, make_objective(man, solver.cut, IdentityOperator(man.n), device=solver.s.device,
                                   threads=solver.s.threads, engine=getattr(solver, "engine", "auto")))
        solver._warm_fit = fit
    obj = fit[1].with_measurements(x_l.reshape(-1))
    z0 = init_latent("cn01", obj.layout.size, np.random.default_rng([seed, restart]))
    rec = run_restarts(obj, restarts=1, z0=z0, budget=Budget(max_iter=WARM_ITERS, max_fun=int(WARM_ITERS * 1.25),
                                                                history=solver.budget.history))
    return obj.layout.pack({k: v[None] for k, v in rec.latents.items()})[0]


class RestartSolver:
    """gs, gs-tv and mganprior: scipy L-BFGS-B with restarts (:func:`gs_onnx.solve.restart.recover_batch`).
    Subclasses build their objective in ``_template(y)`` and add report fields in ``_header()``; ``planned``: whether
    ``--budget auto`` runs the model's stopping plan; ``warm_start``: whether ``--init lasso`` is offered.

    ``solve(i, y, progress, restart=None, z0=None)`` recovers image i; with ``restart`` only that restart
    (started from ``z0`` or from its own seeded init), as ``gs-experiment`` runs one restart per task.
    """

    unit = "evaluations"
    planned = False
    warm_start = False

    def __init__(self, method: str, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ...generator.latent import INITS
        from ...physics import operator_for

        man = model_for(sidecar, s)
        self.cut = cut_for(man, s)
        kind = (sidecar.get("operator") or {}).get("type") if op is None else (op.describe() or {}).get("type")
        self.restarts, self.budget, self.stop = recovery_plan(man, s, kind, self.planned)
        self.note = unvalidated_note(man, s, kind, self.planned, self.restarts, self.budget.max_iter)
        self.init = s.init or "cn01"
        if self.init not in INITS + (WARM_INIT,) or (self.init == WARM_INIT and not self.warm_start):
            allowed = INITS + ((WARM_INIT,) if self.warm_start else ())
            raise GSError(f"unknown --init {self.init!r}: choose one of {', '.join(allowed)}")
        self.op = operator_for(sidecar) if op is None else op
        if self.op.n != man.n:
            raise GSError(f"measurements are for n = {self.op.n} but model {man.name} has n = {man.n}")
        self.man, self.s, self.method = man, s, method
        #: image index -> (H, W) map of where its restarts disagree (:func:`gs_onnx.metrics.disagreement`), for
        #: images recovered with two restarts or more; the caller takes it (``pop``) with the image
        self.disagreement: dict[int, np.ndarray] = {}
        self.template = self._template(np.asarray(y, dtype=np.float32).reshape(-1, self.op.m)[0])
        self.provider = self.template.provider
        self.batch = self._batch_mode()
        self.optimizer, self.lbfgs = self._optimizer()
        self.batch_size = default_batch_size(s.device) if s.batch_size is None else s.batch_size
        from ..restart import MAX_LOCKSTEP_RUNS

        runs = {"none": 1, "restarts": self.restarts,
                "images": self.restarts * min(self.batch_size, len(np.atleast_2d(y)))}[self.batch]
        if runs > MAX_LOCKSTEP_RUNS:
            raise GSError(f"--batch {self.batch} would run {runs} L-BFGS-B runs side by side (one thread each), above "
                          f"{MAX_LOCKSTEP_RUNS}: lower --restarts or --batch-size, or --batch none")
        self.how = f"on {self.provider}"
        self.header = {
            "model": man.name, "model_dir": str(man.root), "cut": self.cut, **self._header(),
            "device": s.device, "provider": self.provider, "restarts": self.restarts, "init": self.init,
            "seed": s.seed, "batch": self.batch, "batch_size": self.batch_size,
            "budget": {"optimizer": OPTIMIZER_WORDS[self.optimizer], "max_iter": self.budget.max_iter,
                       "max_fun": self.budget.max_fun, "history": self.budget.history,
                       "plan": self.s.budget or "auto",
                       **({} if self.lbfgs is None else {self.optimizer: dataclasses.asdict(self.lbfgs)})},
            "stopping": self.stop.describe(),
            **({"note": self.note} if self.note else {}),
        }

    def _optimizer(self):
        from ..restart import OPTIMIZERS, lbfgs_settings

        opt = self.s.optimizer or "scipy"
        if opt not in OPTIMIZERS:
            raise GSError(f"unknown --optimizer {opt!r}: choose one of {', '.join(OPTIMIZERS)}")
        if opt == "scipy":
            if self.s.lr is not None or self.s.line_search is not None:
                raise GSError("--lr and --line-search apply to --optimizer lbfgs")
            return opt, None
        if opt == "adam":
            if self.s.line_search not in (None, "none"):
                raise GSError("--line-search applies to --optimizer lbfgs")
            return opt, adam_settings(self.s, self.budget)
        lr = lbfgs_lr(self.man, self.s)
        ls = None if self.s.line_search in (None, "none") else self.s.line_search
        return opt, lbfgs_settings(self.budget, lr, ls)

    def _batch_mode(self) -> str:
        from ..restart import BATCH_MODES

        b = self.s.batch or "auto"
        if b == "auto":
            return default_batch(self.s.device)
        if b not in BATCH_MODES:
            raise GSError(f"unknown --batch {b!r}: choose one of auto, {', '.join(BATCH_MODES)}")
        return b

    def _fields(self, rec, i: int) -> dict[str, Any]:
        from ...metrics import disagreement

        out = {"measurement_error": rec.measurement_error, "objective": rec.objective,
               "evaluations": rec.evaluations, "best_restart": rec.best_restart,
               "restarts": [r.__dict__ for r in rec.restarts]}
        if rec.restart_images is not None:  # where the restarts disagree: the map for the caller, its summary here
            self.disagreement[i], out["disagreement"] = disagreement(rec.restart_images)
        if rec.refit is not None:
            out["refit"] = rec.refit
        if rec.eval_seconds is not None:
            out["eval_seconds"] = round(rec.eval_seconds, 3)
        return out

    def _starts(self, i: int, y: np.ndarray, restart: int):
        if self.init == WARM_INIT:
            return lasso_warm_start(self, y, restart, self.s.seed + i)
        return None

    def solve(self, i, y, progress, restart: int | None = None, z0: np.ndarray | None = None, trace=None):
        """Image i from its measurements ``y``; ``trace(restart, iteration, z, f, f_held)`` sees every iterate."""
        from ..restart import recover_batch, start_points

        b = self.budget
        Y = np.asarray(y, np.float32).reshape(1, -1)
        tr = None if trace is None else (lambda _i, r, it, z, f, h: trace(r, it, z, f, h))
        if restart is not None:
            if z0 is None:
                z0 = self._starts(i, y, restart)
            if z0 is None:
                z0 = start_points(self.init, self.template.layout.size, self.s.seed + i, restart + 1)[restart]
            rec = recover_batch(self.template, Y, restarts=1, budget=b, seeds=[self.s.seed + i],
                                z0s=[np.asarray(z0).reshape(1, -1)], batch="none", stop=self.stop, trace=tr,
                                optimizer=self.optimizer, lbfgs=self.lbfgs,
                                callback=lambda _i, r, ev, f: progress(
                                    ev / b.max_fun, f"restart {restart + 1}, evaluation {ev}, f {f:.3g}"))[0]
            rec.restarts[0].restart = rec.best_restart = restart
            return rec.image, self._fields(rec, i)
        z0s = None
        if self.init == WARM_INIT:
            z0s = [np.stack([self._starts(i, y, r) for r in range(self.restarts)])]
        (rec,) = recover_batch(self.template, Y, restarts=self.restarts, budget=b,
                               seeds=[self.s.seed + i], init=self.init if z0s is None else "cn01", z0s=z0s,
                               batch="none" if self.batch == "none" else "restarts", stop=self.stop, trace=tr,
                               optimizer=self.optimizer, lbfgs=self.lbfgs,
                               callback=lambda _i, r, ev, f: progress(
                                   (r * b.max_fun + ev) / (self.restarts * b.max_fun),
                                   f"restart {r + 1}/{self.restarts}, evaluation {ev}, f {f:.3g}"))
        return rec.image, self._fields(rec, i)

    def solve_many(self, first: int, Y: np.ndarray, progress):
        """All images of ``Y`` in one lockstep batch (``--batch images``), else one image at a time."""
        from ..restart import recover_batch

        if self.batch != "images" or self.init == WARM_INIT or len(Y) == 1:
            return [self.solve(first + j, Y[j], lambda f, w, _j=j: progress(first + _j, f, w))
                    for j in range(len(Y))]
        b, K = self.budget, self.restarts
        done = np.zeros((len(Y), K))

        def cb(j, r, ev, f):
            done[j, r] = ev
            progress(first + j, float(done[j].sum()) / (K * b.max_fun),
                     f"restart {r + 1}/{K}, evaluation {ev}, f {f:.3g}")

        recs = recover_batch(self.template, np.asarray(Y, np.float32), restarts=K, budget=b,
                             seeds=[self.s.seed + first + j for j in range(len(Y))], init=self.init,
                             batch="images", stop=self.stop, callback=cb, optimizer=self.optimizer, lbfgs=self.lbfgs)
        return [(rec.image, self._fields(rec, first + j)) for j, rec in enumerate(recs)]

