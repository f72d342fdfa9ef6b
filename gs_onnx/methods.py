"""Recovery methods behind one interface, so that every method reads the same measurement files and
writes the same report rows.

Built in (numpy/scipy/ONNX Runtime, no torch): ``gs`` (Generator Surgery; ``--cut 0`` is plain CSGM),
``mganprior`` (N codes composed at the cut) and ``lasso-dct``. Methods that train network weights
(``deep-decoder``, ``iagan``) live in the torch export package and register themselves under the entry-point
group ``gs_onnx.methods``; this module finds them by name and never imports torch itself.

A method is a factory ``make(y, sidecar, settings) -> Solver``; ``Solver.solve(i, y_i, progress)`` returns
the recovered image (C, H, W) float32 clamped to [0, 1] and the method's fields of that image's report row
(``measurement_error`` = ||A x - y||_2 of the clamped image, ``objective``, ``evaluations``, ...).
"""
from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Any, Callable, Protocol

import numpy as np

from . import registry
from .errors import GSError
from .manifest import Manifest

ENTRY_POINT_GROUP = "gs_onnx.methods"
BUILTIN = ("gs", "mganprior", "lasso-dct")
#: Methods this project ships (the last two need the ``export`` extra: torch).
METHODS = ("gs", "mganprior", "lasso-dct", "deep-decoder", "iagan")

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class Settings:
    """What ``gs-recover`` was asked for; ``None`` means the method's default.

    ``restarts``, ``max_iter``, ``max_fun``, ``init``: the L-BFGS-B budget of gs and mganprior;
    ``seed``: image i uses ``seed + i``; ``lam``: Lasso-DCT's l1 weight; ``codes``: mGANprior's N;
    ``steps``/``lr``: Adam steps and rate (Deep Decoder; IAGAN's latent phase); ``finetune_steps``/
    ``finetune_lr``: IAGAN's joint phase; ``channels``: Deep Decoder width; ``batch``: gs runs its restarts
    side by side, one batch through the graphs per step.
    """

    model: str | None = None
    cut: int | None = None
    restarts: int | None = None
    max_iter: int | None = None
    max_fun: int | None = None
    seed: int = 0
    init: str | None = None
    device: str = "auto"
    threads: int = 0
    lam: float | None = None
    codes: int | None = None
    steps: int | None = None
    lr: float | None = None
    finetune_steps: int | None = None
    finetune_lr: float | None = None
    channels: int | None = None
    batch: bool | None = None
    models_dir: str | None = None


#: Which settings each method reads (a setting given to a method that ignores it is an error).
APPLIES: dict[str, set[str]] = {
    "gs": {"model", "cut", "restarts", "max_iter", "max_fun", "init", "device", "threads", "batch"},
    "mganprior": {"model", "cut", "restarts", "max_iter", "max_fun", "init", "device", "threads", "codes"},
    "lasso-dct": {"lam", "max_iter"},
    "deep-decoder": {"model", "cut", "steps", "lr", "channels", "threads"},
    "iagan": {"model", "steps", "lr", "finetune_steps", "finetune_lr", "init", "threads"},
}
_FLAG = {"max_iter": "--max-iter", "max_fun": "--max-fun", "finetune_steps": "--finetune-steps",
         "finetune_lr": "--finetune-lr", "batch": "--batch-restarts"}


class Solver(Protocol):
    """One method set up for one measurement file."""

    unit: str          #: what ``evaluations`` counts ("evaluations", "iterations", "steps")
    how: str           #: a few words for the summary line ("on CPUExecutionProvider")
    header: dict       #: the method's fields of report.json

    def solve(self, i: int, y: np.ndarray, progress: Progress) -> tuple[np.ndarray, dict[str, Any]]:
        ...


def check_settings(method: str, s: Settings) -> None:
    """Refuse settings the method does not read, and out-of-range values."""
    known = APPLIES.get(method)
    if known is not None:
        for f in dataclasses.fields(Settings):
            v = getattr(s, f.name)
            if f.name in ("seed", "models_dir", "device", "threads"):
                continue
            if v is not None and f.name not in known:
                flag = _FLAG.get(f.name, "--" + f.name.replace("_", "-"))
                raise GSError(f"{flag} does not apply to --method {method}")
    for name in ("restarts", "max_iter", "max_fun", "codes", "steps", "channels"):
        v = getattr(s, name)
        if v is not None and v < 1:
            raise GSError(f"{_FLAG.get(name, '--' + name)} must be >= 1")
    for name in ("lr", "finetune_lr"):
        v = getattr(s, name)
        if v is not None and not v > 0:
            raise GSError(f"{_FLAG.get(name, '--' + name)} must be > 0")
    if s.finetune_steps is not None and s.finetune_steps < 0:
        raise GSError("--finetune-steps must be >= 0")
    if s.lam is not None and not s.lam >= 0:
        raise GSError("--lam must be >= 0")
    if s.seed < 0:
        raise GSError("--seed must be >= 0")


def model_for(sidecar: dict, s: Settings) -> Manifest:
    """The model named by ``--model`` or the sidecar (or the default), checked against the measurements."""
    man = registry.load(s.model or sidecar.get("model") or registry.default_model(), s.models_dir)
    if list(sidecar.get("image_shape", [])) != list(man.image_shape):
        raise GSError(f"measurements are of {tuple(sidecar.get('image_shape', []))} images but model "
                      f"{man.name} makes {man.image_shape}")
    return man


def cut_for(man: Manifest, s: Settings) -> int:
    cut = man.recommended_cut if s.cut is None else s.cut
    man.cut(cut)
    return cut


def measurement_error(op, x: np.ndarray, y: np.ndarray) -> float:
    """||A x - y||_2 for one image x (any shape with n values)."""
    return float(np.linalg.norm((op.forward(x.reshape(1, -1)) - y.reshape(1, -1)).astype(np.float64)))


# ----------------------------------------------------------------------------------- gs and mganprior

def restart_budget(man: Manifest, max_iter: int | None = None, max_fun: int | None = None):
    """The L-BFGS-B budget per restart: the model's recommended iterations (default 500) and history, and
    1.25 evaluations per iteration, unless given."""
    from .restart import Budget

    opt = man.recommended.get("optimizer", {})
    max_iter = int(opt.get("max_iter", 500)) if max_iter is None else max_iter
    max_fun = int(max_iter * 1.25) if max_fun is None else max_fun
    return Budget(max_iter=max_iter, max_fun=max_fun, history=int(opt.get("history", 100)))


class _RestartSolver:
    """gs and mganprior: scipy L-BFGS-B with restarts (:func:`gs_onnx.restart.recover`)."""

    unit = "evaluations"

    def __init__(self, method: str, y: np.ndarray, sidecar: dict, s: Settings):
        from .latent import INITS
        from .measurement import operator_for

        man = model_for(sidecar, s)
        self.cut = cut_for(man, s)
        self.restarts = 3 if s.restarts is None else s.restarts
        self.init = s.init or "cn01"
        if self.init not in INITS:
            raise GSError(f"unknown --init {self.init!r}: choose one of {', '.join(INITS)}")
        self.budget = restart_budget(man, s.max_iter, s.max_fun)
        self.op = operator_for(sidecar)
        if self.op.n != man.n:
            raise GSError(f"measurements are for n = {self.op.n} but model {man.name} has n = {man.n}")
        self.man, self.s, self.method = man, s, method
        self._make(y)
        self.how = f"on {self.provider}"
        self.header = {
            "model": man.name, "model_dir": str(man.root), "cut": self.cut, **self._header(),
            "device": s.device, "provider": self.provider, "restarts": self.restarts, "init": self.init,
            "seed": s.seed, "batched_restarts": bool(s.batch), "budget": {"optimizer": "scipy L-BFGS-B", "max_iter": self.budget.max_iter,
                                       "max_fun": self.budget.max_fun, "history": self.budget.history},
        }

    def solve(self, i, y, progress):
        from .restart import recover

        b = self.budget

        def cb(r, ev):
            progress((r * b.max_fun + ev) / (self.restarts * b.max_fun), f"restart {r + 1}")

        rec = recover(None, None, y, restarts=self.restarts, budget=b, seed=self.s.seed + i, init=self.init,
                      callback=cb, objective=self._objective(y), batch=bool(self.s.batch))
        return rec.image, {"measurement_error": rec.measurement_error, "objective": rec.objective,
                           "evaluations": rec.evaluations, "best_restart": rec.best_restart,
                           "restarts": [r.__dict__ for r in rec.restarts]}


class GSSolver(_RestartSolver):
    def _make(self, y):
        from .cut import CutGenerator

        self.gen = CutGenerator(self.man, self.cut, self.s.device, self.s.threads)
        self.provider = self.gen.provider

    def _header(self):
        return {"cut_inputs": list(self.gen.inputs), "free_values": self.gen.size}

    def _objective(self, y):
        from .objective import Objective

        return Objective(self.gen, self.op, y)


class MultiCodeSolver(_RestartSolver):
    def _make(self, y):
        from .mganprior import MultiCodeObjective, default_codes

        self.codes = default_codes(self.man) if self.s.codes is None else self.s.codes
        self.obj = MultiCodeObjective(self.man, self.cut, self.op, y[0], self.codes, self.s.device, self.s.threads)
        self.provider = self.obj.provider

    def _header(self):
        return {"codes": self.codes, "composed": self.obj.composed, "free_inputs": list(self.obj.free),
                "free_values": self.obj.layout.size}

    def _objective(self, y):
        return self.obj.with_measurements(y)


# ------------------------------------------------------------------------------------------- lasso

class LassoSolver:
    """Lasso-DCT: FISTA with adaptive restart on min ||y - A Phi z||^2 + lam ||z||_1 (no model)."""

    unit = "iterations"
    how = "by Lasso-DCT"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings):
        from .lasso import spectral_norm_sq
        from .measurement import operator_for

        self.shape = tuple(int(v) for v in sidecar.get("image_shape", []))
        if len(self.shape) != 3:
            raise GSError("the sidecar has no image_shape (C, H, W)")
        self.lam = 0.01 if s.lam is None else s.lam
        self.max_iter = 2000 if s.max_iter is None else s.max_iter
        self.op = operator_for(sidecar)
        if self.op.n != int(np.prod(self.shape)):
            raise GSError(f"measurements are for n = {self.op.n} but the sidecar's image shape has "
                          f"{int(np.prod(self.shape))}")
        self.L = spectral_norm_sq(self.op, self.op.n)
        self.header = {"model": None, "cut": None, "lam": self.lam, "device": "cpu", "provider": "numpy/scipy",
                       "solver": {"algorithm": "FISTA with adaptive restart", "max_iter": self.max_iter,
                                  "tol": 1e-6}}

    def solve(self, i, y, progress):
        from .lasso import lasso_dct

        res = lasso_dct(self.op, y, self.shape, self.lam, max_iter=self.max_iter, lipschitz=self.L)
        image = np.clip(res.image, 0.0, 1.0).astype(np.float32)
        progress(1.0, "done")
        return image, {"measurement_error": measurement_error(self.op, image, y), "objective": res.objective,
                       "evaluations": res.iterations, "kkt_residual": res.kkt, "converged": res.converged}


# ------------------------------------------------------------------------------------------ lookup

def _builtin(method: str) -> Callable[..., Solver]:
    return {"gs": lambda y, sc, s: GSSolver("gs", y, sc, s),
            "mganprior": lambda y, sc, s: MultiCodeSolver("mganprior", y, sc, s),
            "lasso-dct": LassoSolver}[method]


def plugins() -> dict[str, metadata.EntryPoint]:
    """Methods registered by installed packages under :data:`ENTRY_POINT_GROUP`."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    return list(BUILTIN) + [n for n in plugins() if n not in BUILTIN]


def make_solver(method: str, y: np.ndarray, sidecar: dict, s: Settings) -> Solver:
    """The solver of ``method`` for the measurements ``y`` ((B, m) float32) and their sidecar."""
    check_settings(method, s)
    if method in BUILTIN:
        return _builtin(method)(y, sidecar, s)
    ep = plugins().get(method)
    if ep is None:
        raise GSError(f"unknown method {method!r}: choose one of {', '.join(available())}")
    try:
        factory = ep.load()
    except ImportError as e:
        raise GSError(f"--method {method} needs the export extra (torch): pip install 'gs-onnx[export]' "
                      f"({e})") from None
    return factory(y, sidecar, s)
