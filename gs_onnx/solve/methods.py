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
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..generator import registry
from ..errors import GSError
from ..generator.manifest import MAX_ITERATIONS, MAX_RESTARTS, Manifest
from .skipprior import with_skip_prior

ENTRY_POINT_GROUP = "gs_onnx.methods"
#: Methods this project ships (the last two need the ``export`` extra: torch).
METHODS = ("gs", "gs-tv", "mganprior", "lasso-dct", "tv", "deep-decoder", "iagan")
#: ``--method auto`` (gs-recover's default): the method the model's manifest recommends for the operator type
#: (``recommended.method``, chosen on validation images), else ``gs`` (:func:`resolve_method`).
AUTO = "auto"

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class Settings:
    """What ``gs-recover`` was asked for; ``None`` means the method's default.

    ``restarts``, ``max_iter``, ``max_fun``, ``init``: the L-BFGS-B budget of gs and mganprior;
    ``seed``: image i uses ``seed + i``; ``lam``: Lasso-DCT's l1 weight; ``codes``: mGANprior's N;
    ``steps``/``lr``: Adam steps and rate (Deep Decoder; IAGAN's latent phase); ``finetune_steps``/
    ``finetune_lr``: IAGAN's joint phase; ``channels``: Deep Decoder width; ``batch``: how gs shares
    evaluations between restarts and images (:data:`gs_onnx.solve.restart.BATCH_MODES`, or ``auto``: the device's
    default, :func:`default_batch`); ``engine``: the objective's engine (:data:`gs_onnx.solve.objective.ENGINES`);
    ``operator_on``, ``cuda_graph``: options of the composed engine; ``budget``: ``auto`` (the model's
    validated stopping plan, :func:`gs_onnx.solve.stopping.stopping_plan`) or ``paper`` (3 restarts x 500
    iterations, every measurement fitted); ``stop``, ``holdout``, ``patience``: the stopping rule and its
    settings (:mod:`gs_onnx.solve.stopping`), overriding the plan's.
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
    batch: str | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    line_search: str | None = None
    budget: str | None = None
    stop: str | None = None
    holdout: float | None = None
    patience: int | None = None
    engine: str | None = None
    operator_on: str | None = None
    cuda_graph: bool | None = None
    skip_prior: float | None = None
    gamma: float | None = None
    models_dir: str | None = None


#: Which settings each method reads (a setting given to a method that ignores it is an error).
APPLIES: dict[str, set[str]] = {
    "gs": {"model", "cut", "restarts", "max_iter", "max_fun", "init", "device", "threads", "batch", "batch_size",
           "engine", "optimizer", "lr", "line_search",
           "operator_on", "cuda_graph", "budget", "stop", "holdout", "patience", "skip_prior"},
    "mganprior": {"model", "cut", "restarts", "max_iter", "max_fun", "init", "device", "threads", "codes",
                  "budget", "stop", "holdout", "patience", "optimizer", "lr", "line_search"},
    "lasso-dct": {"lam", "max_iter", "batch_size"},
    "tv": {"lam", "max_iter", "batch_size"},
    "deep-decoder": {"model", "cut", "steps", "lr", "channels", "threads"},
    "iagan": {"model", "steps", "lr", "finetune_steps", "finetune_lr", "init", "threads"},
}
APPLIES["gs-tv"] = APPLIES["gs"] | {"lam", "gamma"}  # gs, then TV anchored to its image
#: Methods whose restarts run the models' validated stopping plans (gs-tv is gs followed by a convex refinement).
PLANNED = ("gs", "gs-tv")
#: How report.json names each optimiser.
OPTIMIZER_WORDS = {"scipy": "scipy L-BFGS-B", "lbfgs": "torch L-BFGS semantics, batched (gs_onnx.solve.lbfgs)",
                   "adam": "torch Adam semantics, batched (gs_onnx.solve.adam)"}
#: Adam's learning rate unless --lr says: the best of 0.01, 0.03, 0.1, 0.3 (21.2, 23.5, 25.5, 24.8 dB) on one bundled
#: face, dcgan c = 1, Gaussian m/n 0.163, 100 iterations (the paper's L-BFGS: 28.2 dB). Not validated further.
ADAM_LR = 0.1


def adam_settings(s: "Settings", budget):
    """Adam's settings for a budget: ``--lr`` (default :data:`ADAM_LR`), ``budget.max_iter`` iterations."""
    from .adam import AdamSettings

    return AdamSettings(lr=ADAM_LR if s.lr is None else s.lr, iterations=budget.max_iter)


#: The paper's torch L-BFGS learning rates per architecture (DCGAN 0.1, BEGAN and VAE 1).
PAPER_LR = {"dcgan": 0.1, "began": 1.0, "vae": 1.0}


def lbfgs_lr(man, s: "Settings") -> float:
    """The paper's L-BFGS learning rate: ``--lr``, else the model's recommended one, else the paper's for its
    architecture."""
    if s.lr is not None:
        return s.lr
    return float(man.recommended.get("lbfgs", {}).get("lr", PAPER_LR.get(man.architecture, 1.0)))

#: Upper bounds of the counts a command line gives (a mistyped 100000 restarts fails at once, not hours later).
#: The optimiser's counts share the manifest's bounds (one home: gs_onnx.generator.manifest).
UPPER = {"restarts": MAX_RESTARTS, "max_iter": MAX_ITERATIONS, "max_fun": MAX_ITERATIONS, "codes": 1000,
         "steps": 10_000_000, "channels": 4096, "batch_size": 4096, "patience": MAX_ITERATIONS}

_FLAG = {"max_iter": "--max-iter", "max_fun": "--max-fun", "finetune_steps": "--finetune-steps",
         "finetune_lr": "--finetune-lr", "operator_on": "--operator-on", "cuda_graph": "--cuda-graph"}


class Solver(Protocol):
    """One method set up for one measurement file."""

    unit: str          #: what ``evaluations`` counts ("evaluations", "iterations", "steps")
    how: str           #: a few words for the summary line ("on CPUExecutionProvider")
    header: dict       #: the method's fields of report.json

    def solve(self, i: int, y: np.ndarray, progress: Progress) -> tuple[np.ndarray, dict[str, Any]]:
        ...


def solve_many(solver, first: int, Y: np.ndarray, progress: Callable[[int, float, str], None]):
    """Images ``first, first + 1, ...`` of ``Y`` ((k, m)): the solver's own ``solve_many`` where it batches
    images, else one ``solve`` per image. ``progress(image, fraction of that image, what)``."""
    if hasattr(solver, "solve_many"):
        return solver.solve_many(first, Y, progress)
    return [solver.solve(first + j, Y[j], lambda f, w, _j=j: progress(first + _j, f, w)) for j in range(len(Y))]


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
    for name in ("restarts", "max_iter", "max_fun", "codes", "steps", "channels", "batch_size", "patience"):
        v = getattr(s, name)
        if v is not None and v < 1:
            raise GSError(f"{_FLAG.get(name, '--' + name)} must be >= 1")
        if v is not None and v > UPPER[name]:
            raise GSError(f"{_FLAG.get(name, '--' + name)} {v} is above {UPPER[name]}")
    for name in ("lr", "finetune_lr"):
        v = getattr(s, name)
        if v is not None and not v > 0:
            raise GSError(f"{_FLAG.get(name, '--' + name)} must be > 0")
    if s.finetune_steps is not None and s.finetune_steps < 0:
        raise GSError("--finetune-steps must be >= 0")
    if s.lam is not None and not s.lam >= 0:
        raise GSError("--lam must be >= 0")
    if s.skip_prior is not None and not (np.isfinite(s.skip_prior) and s.skip_prior >= 0):
        raise GSError("--skip-prior must be a number >= 0")
    if s.gamma is not None and not (np.isfinite(s.gamma) and s.gamma > 0):
        raise GSError("--gamma must be a number > 0")
    if s.seed < 0:
        raise GSError("--seed must be >= 0")
    import os

    cores = os.cpu_count() or 1
    if not 0 <= s.threads <= cores:
        raise GSError(f"--threads must be between 0 (all cores) and {cores}, the cores of this machine")


def skip_prior_for(man: Manifest, cut: int, s: Settings):
    """The skip-source prior gs runs (:mod:`gs_onnx.solve.skipprior`): ``--skip-prior W``, else the weight the
    model's manifest recommends (``recommended.skip_prior.weight``, chosen on validation images), else none."""
    from .skipprior import prior_for

    return prior_for(man, cut, s.skip_prior, device="cpu", threads=s.threads)


def model_for(sidecar: dict, s: Settings) -> Manifest:
    """The model named by ``--model`` or the sidecar (or the default), checked against the measurements."""
    named = sidecar.get("model")
    if s.model is None and named is not None and (not isinstance(named, str) or "/" in named or "\\" in named
                                                  or named in (".", "..") or Path(named).is_absolute()):
        # a folder comes from the command line (--model FOLDER), never from a file someone else wrote
        raise GSError(f"the sidecar names the model {str(named)[:80]!r}, which is not an installed model's name: a "
                      "sidecar may name a model, not a folder; pass --model NAME_OR_FOLDER to choose one")
    man = registry.load(s.model or named or registry.default_model(), s.models_dir)
    if list(sidecar.get("image_shape", [])) != list(man.image_shape):
        shape = tuple(sidecar.get("image_shape", []))
        fits = [name for name, folder in registry.available(s.models_dir).items()
                if _image_shape(folder) == list(shape)]
        hint = f": use --model {' or '.join(fits)}" if fits else " (no installed model makes such images)"
        raise GSError(f"measurements are of {shape} images but model {man.name} makes {man.image_shape}{hint}")
    return man


def _image_shape(folder) -> list | None:
    """The image shape a model folder's manifest declares (read without verifying the files), or None."""
    import json

    try:
        im = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["image"]
        return [int(im["channels"]), int(im["height"]), int(im["width"])]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_cut(man: Manifest, cut: int | None) -> int:
    """``cut``, or the model's recommended cut when None; checked against the model."""
    cut = man.recommended_cut if cut is None else cut
    if isinstance(cut, np.integer):
        cut = int(cut)
    man.cut(cut)
    return cut


def cut_for(man: Manifest, s: Settings) -> int:
    return resolve_cut(man, s.cut)


def default_batch(device: str) -> str:
    """How gs batches by default: every restart of every image of a chunk in one lockstep batch. On a GPU a
    batch costs little more than one row; on 2 CPU cores 2 images x 3 restarts in one batch took 0.65-0.92 of
    the time of one restart after another, each image's restarts together 0.89-0.99 (docs/benchmarks.md)."""
    return "images"


def default_batch_size(device: str) -> int:
    """Images per lockstep batch (``--batch-size``) by default: 32 on CUDA (96 rows with 3 restarts), 8 on
    the CPU (activation memory grows with the rows; results are written chunk by chunk)."""
    from ..engine.runtime import resolve_device

    return 32 if resolve_device(device).name == "cuda" else 8


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


BUDGETS = ("auto", "paper")


def recovery_plan(man: Manifest, s: Settings, operator: str | None, method: str = "gs"):
    """(restarts, Budget, StopRule) for ``s``: the one place budgets and stopping rules are resolved.

    ``--budget auto`` (gs): the model's validated plan for this operator (:func:`gs_onnx.solve.stopping.stopping_plan`);
    ``--budget paper``, and any method the plan was not validated for: the paper's 3 restarts x the manifest's
    iterations (500) with every measurement fitted. ``--restarts``, ``--max-iter``, ``--max-fun``, ``--stop``,
    ``--holdout`` and ``--patience`` override the plan.
    """
    from .stopping import RULES, StopRule, rule_from, stopping_plan

    budget = s.budget or "auto"
    if budget not in BUDGETS:
        raise GSError(f"unknown --budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    opt = man.recommended.get("optimizer", {})
    paper = {"rule": "fixed", "restarts": int(opt.get("restarts", 3)), "max_iter": int(opt.get("max_iter", 500))}
    plan = stopping_plan(man.recommended, operator) if budget == "auto" and method in PLANNED else paper
    if s.stop is not None:
        if s.stop not in RULES:
            raise GSError(f"unknown --stop {s.stop!r}: choose one of {', '.join(RULES)}")
        plan = {**{"holdout": 0.1, "patience": 30}, **plan, "rule": s.stop}
    if s.holdout is not None:
        plan["holdout"] = s.holdout
    if s.patience is not None:
        plan["patience"] = s.patience
    if plan["rule"] == "fixed" and (s.holdout is not None or s.patience is not None):
        raise GSError("--holdout and --patience need a held-out rule (--stop holdout or refit)")
    restarts = int(plan.get("restarts", 3)) if s.restarts is None else s.restarts
    rule = rule_from(plan) if plan["rule"] == "fixed" else StopRule(plan["rule"], float(plan["holdout"]),
                                                                     int(plan["patience"]))
    return restarts, restart_budget(man, s.max_iter if s.max_iter is not None else plan.get("max_iter"),
                                    s.max_fun), rule


def _unvalidated_note(man: Manifest, s: Settings, operator: str | None, method: str, restarts: int,
                      max_iter: int) -> str | None:
    """A one-line note where ``--budget auto`` falls back to the paper's budget (``restarts`` x ``max_iter``, as
    :func:`recovery_plan` resolved it) because the model's stopping plan was not validated on this operator and
    no budget flag was given: it can take many times longer."""
    from .stopping import has_plan

    if (s.budget or "auto") != "auto" or method not in PLANNED or operator is None or not has_plan(man.recommended):
        return None
    if any(v is not None for v in (s.restarts, s.max_iter, s.stop)) or has_plan(man.recommended, operator):
        return None
    return (f"{man.name}'s stopping plan was not validated on {operator} measurements: running the paper's budget "
            f"({restarts} restarts x {max_iter} iterations); --restarts 1 --max-iter 200 is "
            "several times faster (docs/physics.md, Budgets)")


class _RestartSolver:
    """gs and mganprior: scipy L-BFGS-B with restarts (:func:`gs_onnx.solve.restart.recover_batch`).

    ``solve(i, y, progress, restart=None, z0=None)`` recovers image i; with ``restart`` only that restart
    (started from ``z0`` or from its own seeded init), as ``gs-experiment`` runs one restart per task.
    """

    unit = "evaluations"

    def __init__(self, method: str, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ..generator.latent import INITS
        from ..physics import operator_for

        man = model_for(sidecar, s)
        self.cut = cut_for(man, s)
        kind = (sidecar.get("operator") or {}).get("type") if op is None else (op.describe() or {}).get("type")
        self.restarts, self.budget, self.stop = recovery_plan(man, s, kind, method)
        self.note = _unvalidated_note(man, s, kind, method, self.restarts, self.budget.max_iter)
        self.init = s.init or "cn01"
        if self.init not in INITS + (WARM_INIT,) or (self.init == WARM_INIT and method != "gs"):
            allowed = INITS + ((WARM_INIT,) if method == "gs" else ())
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
        from .restart import MAX_LOCKSTEP_RUNS

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
        from .restart import OPTIMIZERS, lbfgs_settings

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
        from .restart import BATCH_MODES

        b = self.s.batch or "auto"
        if b == "auto":
            return default_batch(self.s.device)
        if b not in BATCH_MODES:
            raise GSError(f"unknown --batch {b!r}: choose one of auto, {', '.join(BATCH_MODES)}")
        return b

    def _fields(self, rec, i: int) -> dict[str, Any]:
        from ..metrics import disagreement

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
        from .restart import recover_batch, start_points

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
        from .restart import recover_batch

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


class GSSolver(_RestartSolver):
    def _template(self, y):
        from .objective import make_objective

        opts = {k: v for k, v in (("operator_on", self.s.operator_on), ("cuda_graph", self.s.cuda_graph))
                if v is not None}
        from .objective import resolve_engine

        self.engine = resolve_engine(self.s.engine or "auto")
        obj = make_objective(self.man, self.cut, self.op, device=self.s.device, threads=self.s.threads,
                             engine=self.engine, **opts)
        self.size = obj.layout.size
        self.cut_inputs = list(obj.layout.names)
        self.skip_prior = skip_prior_for(self.man, self.cut, self.s)
        self.engine_objective = obj
        return with_skip_prior(obj, self.skip_prior).with_measurements(y)

    def _header(self):
        h = {"cut_inputs": self.cut_inputs, "free_values": self.size, "engine": self.engine}
        if self.skip_prior is not None and self.skip_prior.active:
            h["skip_prior"] = self.skip_prior.describe()
        eng = getattr(self.template, "engine", None)
        if eng is not None:
            h["engine_options"] = {"operator_on": eng.operator_on, "iobinding": eng.iobinding,
                                   "cuda_graph": eng.cuda_graph, "static_batch": eng.static_batch}
        return h


class GSTVSolver(GSSolver):
    """gs-tv: Generator Surgery, then total variation anchored to the generator's image,
    ``min_x ||A x - y||^2 + lam TV(x) + gamma ||x - G||^2`` over x in [0, 1] (:func:`gs_onnx.solve.tv.tv_batch`).
    The generator brings what it knows of faces, TV fills what it cannot represent and keeps the image close to
    the measurements; ``lam`` is TV's weight for the operator, ``gamma`` the anchor's
    (the model's ``recommended.gs_tv``, else :data:`gs_onnx.solve.tv.LAM` and :data:`gs_onnx.solve.tv.GAMMA`,
    chosen on CelebA train faces), ``--lam``/``--gamma`` override them."""

    def __init__(self, method: str, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from .lasso import spectral_norm_sq
        from .tv import MAX_ITER, default_gamma, default_lam

        super().__init__(method, y, sidecar, s, op)
        kind = (self.op.describe() or {}).get("type")
        own = self.man.recommended.get("gs_tv") or {}  # the model's own weights, chosen on its validation images
        self.lam = (own.get("lam") or {}).get(kind, default_lam(kind)) if s.lam is None else s.lam
        self.gamma = (own.get("gamma") or {}).get(kind, default_gamma(kind)) if s.gamma is None else s.gamma
        self.L = spectral_norm_sq(self.op, self.op.n)
        self.header["tv"] = {"lam": self.lam, "gamma": self.gamma, "max_iter": MAX_ITER}
        self.how += " + TV"

    def _refine(self, images, Y):
        from .tv import tv_batch

        G = np.stack(images).astype(np.float32)
        Y = np.asarray(Y, np.float32).reshape(len(G), -1)
        return tv_batch(self.op, Y, G.shape[1:], self.lam, lipschitz=self.L, anchor=G, gamma=self.gamma)

    _inner = False  # True while gs's own solve_many calls solve (the refinement then comes once, batched)

    def solve(self, i, y, progress, restart: int | None = None, z0: np.ndarray | None = None, trace=None):
        image, fields = super().solve(i, y, progress, restart=restart, z0=z0, trace=trace)
        if self._inner:
            return image, fields
        return self._with_tv(image, fields, y, self._refine([image], y)[0])

    def solve_many(self, first: int, Y: np.ndarray, progress):
        self._inner = True
        try:
            out = super().solve_many(first, Y, progress)
        finally:
            self._inner = False
        refined = self._refine([im for im, _ in out], Y)
        return [self._with_tv(im, f, y, r) for (im, f), y, r in zip(out, np.asarray(Y, np.float32), refined)]

    def _with_tv(self, gs_image, fields, y, res):
        self.last_gs_image = gs_image  # the generator's image the refinement was anchored to (gs alone)
        y = np.asarray(y, np.float32).reshape(-1)
        fields = dict(fields, gs_measurement_error=fields["measurement_error"],
                      measurement_error=measurement_error(self.op, res.image, y),
                      tv={"iterations": res.iterations, "objective": res.objective, "converged": res.converged})
        return res.image, fields


# ----------------------------------------------------------------------------------- gs in the recovery graph

#: ``gs-recover --engine recovery-graph``: gs run by the recovery graph (gs_onnx.solve.recovery_graph), one session
#: run per image.
GRAPH_ENGINE = "recovery-graph"


#: Iterations per run of the recovery graph, so that gs-recover can show progress: the chunks give the one run's
#: result bit for bit; measured cost 0.92-1.03x the one run (dcgan), 0.99-1.03x (began), 3 rounds (docs/recovery-graph.md).
GRAPH_CHUNK = 20


class GraphSolver:
    """gs whose whole recovery runs in the recovery graph: the same plan, start latents, held-out rows, skip
    prior and winner rule as ``gs-recover --optimizer lbfgs``, with no host loop (``--engine recovery-graph``)."""

    unit = "iterations"
    batch = "none"
    batch_size = 1

    def __init__(self, y: np.ndarray, sidecar: dict, s, op=None):
        from ..physics import operator_for
        from .recovery_graph import GraphRecovery, recovery_model

        if s.optimizer not in (None, "lbfgs", "adam") or s.line_search not in (None, "none"):
            raise GSError("--engine recovery-graph runs the paper's L-BFGS without line search (--optimizer lbfgs) "
                          "or Adam (--optimizer adam)")
        for flag, v in (("--batch", s.batch), ("--batch-size", s.batch_size), ("--operator-on", s.operator_on),
                        ("--cuda-graph", s.cuda_graph), ("--max-fun", s.max_fun)):
            if v is not None:
                raise GSError(f"{flag} does not apply to --engine recovery-graph")
        man = model_for(sidecar, s)
        self.man, self.s, self.cut = man, s, cut_for(man, s)
        self.op = operator_for(sidecar) if op is None else op
        history = restart_budget(man).history
        self.model, self.values = recovery_model(man, self.cut, self.op, history=history,
                                                 optimizer=s.optimizer or "lbfgs")
        self.runner = GraphRecovery(self.model, s.device, s.threads)
        provider = self.runner.session.get_providers()[0]
        _, plan = plan_inputs(man, self.cut, self.op, np.asarray(y, np.float32).reshape(-1, self.op.m)[0], s, 0)
        self.note = None
        self.disagreement: dict[int, np.ndarray] = {}
        self.how = f"in one ONNX graph on {provider}"
        self.provider = provider
        self.header = {"model": man.name, "model_dir": str(man.root), "cut": self.cut, "engine": GRAPH_ENGINE,
                       "device": s.device, "provider": provider, "restarts": plan["restarts"],
                       "init": plan["init"], "seed": s.seed,
                       "budget": {"optimizer": plan["optimizer"], "max_iter": plan["max_iter"],
                                  "history": plan["history"], "lr": plan["lr"], "plan": s.budget or "auto",
                                  **{k: plan[k] for k in ("steps", "step_iters", "betas", "eps") if k in plan}},
                       "stopping": plan["stopping"], "skip_prior": plan["skip_prior"]}

    def solve(self, i: int, y: np.ndarray, progress):
        from ..metrics import disagreement
        from .recovery_graph import progress_words

        inputs, plan = plan_inputs(self.man, self.cut, self.op, y, self.s, i)
        progress(0.0, "running the recovery graph")
        out = self.runner.run({**inputs, **self.values}, chunk=GRAPH_CHUNK,
                              progress=lambda it, budget, o: progress(it / max(budget, 1), progress_words(it, budget, o)))
        image = out["image"]
        win = int(out["winner"])
        K = len(out["score"])
        restarts = [{"restart": r, "iterations": int(out["iterations"][r]), "score": float(out["score"][r]),
                     "best_iteration": int(out["best_iteration"][r]),
                     "objective": float(out["objective"][-1, r]) if len(out["objective"]) else None}
                    for r in range(K)]
        fields = {"measurement_error": measurement_error(self.op, image, y), "objective": restarts[win]["objective"],
                  "evaluations": int(out["iterations"].sum()) + K, "best_restart": win, "restarts": restarts}
        if K >= 2:
            self.disagreement[i], fields["disagreement"] = disagreement(out["images"])
        progress(1.0, "done")
        return image, fields


def plan_inputs(man, cut: int, op, y: np.ndarray, s, image_index: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Every input of the recovery graph but the operator's, as ``gs-recover --optimizer lbfgs`` would run image
    ``image_index`` of a file with settings ``s`` (:class:`gs_onnx.solve.methods.Settings`): its start latents
    (``init``, seed ``s.seed + image_index``), held-out rows, skip prior, L-BFGS numbers and stopping plan.
    Returns (inputs, plan description)."""
    from ..generator.latent import LatentLayout
    from .recovery_graph import empty_state, prior_arrays
    from .restart import lbfgs_settings, start_points
    from .stopping import holdout_mask

    kind = (op.describe() or {}).get("type")
    restarts, budget, rule = recovery_plan(man, s, kind, "gs")
    if rule.name == "refit":
        raise GSError("the recovery graph runs the fixed and held-out rules, not refit: use --stop holdout")
    optimizer = s.optimizer or "lbfgs"
    tail_shapes = {n: tuple(man.tensors[n]) for n in man.cut(cut).inputs}
    layout = LatentLayout(tail_shapes)
    seed = int(s.seed) + int(image_index)
    init = s.init or "cn01"
    z0 = np.stack(start_points(init, layout.size, seed, restarts)).astype(np.float32)
    y = np.asarray(y, np.float32).reshape(1, -1)
    w = (holdout_mask(op.m, rule.holdout, seed) if rule.uses_holdout else np.ones(op.m, np.float32))[None]
    mean, scale = prior_arrays(man, cut, layout, skip_prior_for(man, cut, s))
    inputs = {"z0": z0, "y": y, "w": w, "prior_mean": mean, "prior_scale": scale,
              "patience": np.asarray(rule.patience if rule.uses_holdout else 0, np.int64),
              "start": np.asarray(0, np.int64), **empty_state(optimizer, layout.size, budget.history)}
    plan = {"restarts": restarts, "max_iter": budget.max_iter, "history": budget.history, "stopping": rule.describe(),
            "optimizer": OPTIMIZER_WORDS[optimizer], "init": init, "seed": seed, "skip_prior": bool(scale.any())}
    if optimizer == "adam":
        st = adam_settings(s, budget)
        inputs.update(lr=np.asarray(st.lr, np.float64), beta1=np.asarray(st.beta1, np.float64),
                      beta2=np.asarray(st.beta2, np.float64), eps=np.asarray(st.eps, np.float64),
                      max_iterations=np.asarray(st.iterations, np.int64), chunk=np.asarray(st.iterations, np.int64))
        plan.update(lr=st.lr, betas=[st.beta1, st.beta2], eps=st.eps)
        return inputs, plan
    st = lbfgs_settings(budget, lbfgs_lr(man, s))
    inputs.update(lr=np.asarray(st.lr, np.float64), tolerance_grad=np.asarray(st.tolerance_grad, np.float64),
                  tolerance_change=np.asarray(st.tolerance_change, np.float64),
                  steps=np.asarray(st.steps, np.int64), step_iters=np.asarray(st.max_iter, np.int64),
                  chunk=np.asarray(st.steps * st.max_iter, np.int64))
    plan.update(lr=st.lr, steps=st.steps, step_iters=st.max_iter)
    return inputs, plan


class MultiCodeSolver(_RestartSolver):
    def _template(self, y):
        from .mganprior import MultiCodeObjective, default_codes

        self.codes = default_codes(self.man) if self.s.codes is None else self.s.codes
        self.obj = MultiCodeObjective(self.man, self.cut, self.op, y, self.codes, self.s.device, self.s.threads)
        return self.obj

    def _header(self):
        return {"codes": self.codes, "composed": self.obj.composed, "free_inputs": list(self.obj.free),
                "free_values": self.obj.layout.size}


#: The Lasso-DCT warm start (``--init lasso``, the paper's Fig. 6): the cut generator fitted (A = I) to the
#: Lasso-DCT estimate for this many L-BFGS-B iterations, from CN(0,1), then GS from there.
WARM_INIT = "lasso"
WARM_ITERS = 100


def lasso_warm_start(solver: "_RestartSolver", y: np.ndarray, restart: int, seed: int) -> np.ndarray:
    """The start of ``restart`` for ``--init lasso``: the latent whose image best fits the Lasso-DCT estimate."""
    from .lasso import lasso_dct
    from ..generator.latent import init_latent
    from .objective import make_objective
    from ..physics import IdentityOperator
    from .restart import Budget, run_restarts

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


# ------------------------------------------------------------------------------------------- lasso

class _ImageSolver:
    """A classical prior solved on the image itself (no model): the images of a chunk are solved together,
    sharing every application of A. Subclasses set ``how``, ``header`` (after :meth:`_setup`) and
    ``_batch(Y, callback) -> [(image (C, H, W) in [0, 1], fields)]``."""

    unit = "iterations"
    batch = "images"

    def _setup(self, sidecar: dict, s: Settings, op, max_iter: int) -> None:
        from ..physics import operator_for
        from .lasso import spectral_norm_sq

        self.shape = tuple(int(v) for v in sidecar.get("image_shape", []))
        if len(self.shape) != 3:
            raise GSError("the sidecar has no image_shape (C, H, W)")
        self.op = operator_for(sidecar) if op is None else op
        if self.op.n != int(np.prod(self.shape)):
            raise GSError(f"measurements are for n = {self.op.n} but the sidecar's image shape has "
                          f"{int(np.prod(self.shape))}")
        self.max_iter = max_iter if s.max_iter is None else s.max_iter
        self.batch_size = 8 if s.batch_size is None else s.batch_size
        self.L = spectral_norm_sq(self.op, self.op.n)

    def solve(self, i, y, progress):
        ((image, fields),) = self.solve_many(i, np.asarray(y).reshape(1, -1), lambda _i, f, w: progress(f, w))
        return image, fields

    def solve_many(self, first: int, Y: np.ndarray, progress):
        Y = np.asarray(Y, np.float32).reshape(-1, self.op.m)

        def cb(it, obj):
            for j in range(len(Y)):
                progress(first + j, it / self.max_iter, f"iteration {it}, objective {obj[j]:.4g}")

        return self._batch(Y, cb)


class LassoSolver(_ImageSolver):
    """Lasso-DCT: FISTA with adaptive restart and continuation on min ||y - A Phi z||^2 + lam ||z||_1 (no
    model); the images of a chunk are solved together, sharing every read of A (:func:`gs_onnx.solve.lasso.lasso_dct_batch`)."""

    how = "by Lasso-DCT"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from .lasso import MAX_ITER, TOL, default_lam

        self._setup(sidecar, s, op, MAX_ITER)
        self.lam = default_lam((self.op.describe() or {}).get("type")) if s.lam is None else s.lam
        self.header = {"model": None, "cut": None, "lam": self.lam, "device": "cpu", "provider": "numpy/scipy",
                       "solver": {"algorithm": "FISTA with adaptive restart and continuation",
                                  "max_iter": self.max_iter, "tol": TOL}}

    def _batch(self, Y, cb):
        from .lasso import lasso_dct_batch

        out = []
        for res, y in zip(lasso_dct_batch(self.op, Y, self.shape, self.lam, max_iter=self.max_iter,
                                          lipschitz=self.L, callback=cb), Y):
            image = np.clip(res.image, 0.0, 1.0).astype(np.float32)
            out.append((image, {"measurement_error": measurement_error(self.op, image, y), "objective": res.objective,
                                "evaluations": res.iterations, "kkt_residual": res.kkt, "converged": res.converged}))
        return out


class TVSolver(_ImageSolver):
    """Total variation: min ||A x - y||^2 + lam TV(x) over x in [0, 1] by FISTA with a TV prox (no model,
    no training); ``lam`` per operator type as chosen on CelebA train faces (:data:`gs_onnx.solve.tv.LAM`)
    unless ``--lam`` says; the images of a chunk share every application of A (:func:`gs_onnx.solve.tv.tv_batch`)."""

    how = "by TV (FISTA)"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from .tv import MAX_ITER, TOL, default_lam

        self._setup(sidecar, s, op, MAX_ITER)
        self.lam = default_lam((self.op.describe() or {}).get("type")) if s.lam is None else s.lam
        self.header = {"model": None, "cut": None, "lam": self.lam, "device": "cpu", "provider": "numpy/scipy",
                       "solver": {"algorithm": "FISTA with adaptive restart, isotropic TV prox by dual fast "
                                               "gradient projection, box [0, 1]", "max_iter": self.max_iter, "tol": TOL}}

    def _batch(self, Y, cb):
        from .tv import tv_batch

        return [(res.image, {"measurement_error": measurement_error(self.op, res.image, y), "objective": res.objective,
                             "evaluations": res.iterations, "converged": res.converged})
                for res, y in zip(tv_batch(self.op, Y, self.shape, self.lam, max_iter=self.max_iter, lipschitz=self.L,
                                           callback=cb), Y)]


# ------------------------------------------------------------------------------------------ lookup

#: The methods' registry: name -> factory ``(y, sidecar, settings, op=None) -> Solver``. A method of this package
#: is one class and one entry here (:func:`register_method`); a method from another package registers under the
#: entry-point group :data:`ENTRY_POINT_GROUP` instead (Deep Decoder and IAGAN, which need torch).
SOLVERS: dict[str, Callable[..., Solver]] = {}


def register_method(name: str, factory: Callable[..., Solver]) -> None:
    """Make ``name`` a ``--method`` of gs-recover, the Python API and gs-experiment alike."""
    if name in SOLVERS:
        raise GSError(f"method {name!r} is already registered")
    SOLVERS[name] = factory


register_method("gs", lambda y, sc, s, op=None: GSSolver("gs", y, sc, s, op))
register_method("mganprior", lambda y, sc, s, op=None: MultiCodeSolver("mganprior", y, sc, s, op))
register_method("gs-tv", lambda y, sc, s, op=None: GSTVSolver("gs-tv", y, sc, s, op))
register_method("lasso-dct", LassoSolver)
register_method("tv", TVSolver)


def plugins() -> dict[str, metadata.EntryPoint]:
    """Methods registered by installed packages under :data:`ENTRY_POINT_GROUP`."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    return list(SOLVERS) + [n for n in plugins() if n not in SOLVERS]


def recommended_method(recommended: dict, operator: str | None = None) -> str:
    """The method a model recommends for an operator type (its manifest's ``recommended`` section):
    ``method.per_operator[operator]``, else ``method.default``, else ``gs``.

    Examples
    --------
    >>> rec = {"method": {"default": "gs-tv", "per_operator": {"identity": "gs"}}}
    >>> recommended_method(rec, "mask"), recommended_method(rec, "identity"), recommended_method({}, "mask")
    ('gs-tv', 'gs', 'gs')
    """
    m = (recommended or {}).get("method") or {}
    return (m.get("per_operator") or {}).get(operator or "", m.get("default", "gs"))


def resolve_method(method: str, sidecar: dict, s: Settings) -> tuple[str, str | None]:
    """``method``, or for ``auto`` the method the model (``--model``, else the sidecar's) recommends for the
    sidecar's operator type (:func:`recommended_method`), with a line saying why (None when not ``auto``, or
    when the model recommends nothing and ``gs`` runs as ever)."""
    if method != AUTO:
        return method, None
    man = model_for(sidecar, s)
    kind = (sidecar.get("operator") or {}).get("type")
    name = recommended_method(man.recommended, kind)
    if name not in SOLVERS and name not in plugins():
        raise GSError(f"model {man.name} recommends --method {name!r}, which is not installed: choose one of "
                      f"{', '.join(available())}")
    if not man.recommended.get("method"):
        return name, None
    return name, f"method {name}: {man.name}'s recommended method for {kind or 'these'} measurements (--method auto)"


def make_solver(method: str, y: np.ndarray, sidecar: dict, s: Settings, op=None) -> Solver:
    """The solver of ``method`` for the measurements ``y`` ((B, m) float32) and their sidecar; ``auto``: the
    model's recommended method for the operator (:func:`resolve_method`).

    ``op`` passes an operator already built from the sidecar (``gs-experiment`` keeps a dense A across
    tasks); by default it is rebuilt from the sidecar."""
    method, _ = resolve_method(method, sidecar, s)
    check_settings(method, s)
    if s.engine == GRAPH_ENGINE:
        if method != "gs":
            raise GSError(f"--engine {GRAPH_ENGINE} runs gs, not {method}: give --method gs")
        return GraphSolver(y, sidecar, s, op)
    if method in SOLVERS:
        return SOLVERS[method](y, sidecar, s, op)
    ep = plugins().get(method)
    if ep is None:
        raise GSError(f"unknown method {method!r}: choose one of {', '.join(available())}")
    try:
        factory = ep.load()
    except ImportError as e:
        raise GSError(f"--method {method} needs the export extra (torch): pip install 'gs-onnx[export]' "
                      f"({e})") from None
    return factory(y, sidecar, s)
