"""One unit of experiment work, and running it: a :class:`Task` is one restart of one method on one image
at one measurement ratio (or one sample grid); :func:`run_task` returns its results row.

Tasks are plain frozen dataclasses of JSON values, so they pickle to worker processes and Ray workers and
their :meth:`Task.key` identifies a finished row in a results file.

Seeds (all derived from the task's base ``seed``; ``i`` is the image index within its dataset):

* A: ``gs_onnx.physics.make(operator, image_shape, seed, m=m, **operator_params)`` -- one operator per ratio
  (or setting), shared by every image, as ``gs-measure``;
* noise: :func:`gs_onnx.physics.noise.measure` with seed ``seed + i``;
* restart r of gs / no-GS / mGANprior starts from ``init_latent(init, size, default_rng([seed + i, r]))``,
  the very start of restart r of ``gs-recover --seed seed`` for image i; single-run methods (Lasso-DCT,
  Deep Decoder, IAGAN) have restart 0 only and use seed ``seed + i``;
* generated images (dataset ``generated``): G(z) with z ~ N(0, 1) from ``default_rng([seed, i, 7])``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Any

import numpy as np

from ..errors import GSError
from ..generator.manifest import model_digest
from .cache import cached, generator_for, manifest_for

#: The paper's "no GS" line: ``gs`` at cut 0 (plain CSGM). Every other task method is a registered method
#: (:mod:`gs_onnx.solve.registry`), or ``samples`` (a grid of samples, no recovery).
NOGS = "nogs"
SAMPLES = "samples"


def method_of(name: str):
    """The registered :class:`~gs_onnx.solve.registry.Method` a task method runs (``nogs``: gs); GSError for an
    unknown one."""
    from ..solve.registry import available, method

    if name not in (NOGS, *available()):
        raise GSError(f"unknown method {name!r}: choose one of {', '.join((NOGS, *available(), SAMPLES))}")
    return method("gs" if name == NOGS else name)


def runs_restarts(name: str) -> bool:
    """Whether a task method runs restarts from start latents (one task per restart under the paper's budget)."""
    return name != SAMPLES and method_of(name).restarts


@dataclasses.dataclass(frozen=True)
class Task:
    """One restart of one method on one image at one ratio.

    Attributes
    ----------
    preset : the experiment (``cs``, ``baselines``, ``raw``, ...)
    model : model name or folder (for ``lasso-dct``/``deep-decoder``: the model whose image size is used)
    method : a registered method's name, :data:`NOGS` or :data:`SAMPLES`
    cut : the cut for gs / mganprior (``None``: the model's recommended cut); 0 for nogs
    dataset : a label (``celeba-test``, ``coco``, ``generated``, ...)
    image : image file path, or ``generated`` for an image the generator makes
    index : the image's index within its dataset (seeds noise and restarts)
    ratio : m / n (m = round(ratio n) for gaussian and srdct; for other operators m / n of their parameters)
    operator : an operator type of :mod:`gs_onnx.physics` (``gaussian``, ``srdct``, ``identity``, ``mask``, ...)
    noise : add noise: the operator's default (the paper's rule for gaussian/srdct, 0.01 per value
        otherwise) unless ``sigma`` is given
    operator_params : the operator's parameters as sorted (name, value) pairs (``keep``, ``factor``, ...)
    sigma : per-value noise std overriding the operator's default (``None``: the default)
    restart : restart index (0 for single-run methods)
    seed : base seed (see the module docstring)
    init : latent init (``cn01``, ``zero``, ``normal5``, ``normal10``, ... or ``lasso``)
    max_iter, max_fun : L-BFGS-B budget per restart (gs, nogs, mganprior); ``max_iter`` is the iteration
        count of Lasso-DCT; ``None``: the method's default
    options : other method settings as sorted (name, value) pairs (``steps``, ``lr``, ``codes``, ...)
    variant : a label that tells conditions apart in plots (``trained``/``untrained``, an init, ...)
    """

    preset: str
    model: str
    method: str
    dataset: str
    image: str
    index: int
    ratio: float
    operator: str = "gaussian"
    noise: bool = True
    cut: int | None = None
    restart: int = 0
    seed: int = 0
    init: str = "cn01"
    max_iter: int | None = None
    max_fun: int | None = None
    options: tuple[tuple[str, Any], ...] = ()
    variant: str = ""
    operator_params: tuple[tuple[str, Any], ...] = ()
    sigma: float | None = None

    def key(self) -> str:
        """A canonical JSON string of every field: equal keys mean the same work."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = [list(kv) for kv in self.options]
        # fields added after results files existed are left out at their defaults, so that old keys still match
        if not self.operator_params:
            d.pop("operator_params")
        else:
            d["operator_params"] = [list(kv) for kv in self.operator_params]
        if self.sigma is None:
            d.pop("sigma")
        return d

    def setting(self) -> str:
        """The measurement condition in words: ``gaussian``, ``mask keep=0.1``, ``identity sigma=0.1``."""
        parts = [self.operator] + [f"{k}={v}" for k, v in self.operator_params]
        if self.sigma is not None:
            parts.append(f"sigma={self.sigma:g}")
        return " ".join(parts)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        d = dict(d)
        d["options"] = tuple((str(k), v) for k, v in d.get("options", ()))
        d["operator_params"] = tuple((str(k), v) for k, v in d.get("operator_params", ()))
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def runs_plan(task: Task) -> bool:
    """Whether the task runs the model's stopping plan as ``gs-recover --budget auto`` does (every restart in
    one task): the presets' default budget (option ``budget=auto``) and the budget preset's ``auto`` rule."""
    opts = dict(task.options)
    return opts.get("budget") == "auto" or opts.get("stop") == "auto"


# --------------------------------------------------------------------------------------- operators
# kept between tasks by .cache (a dense A takes 18 s to draw at 128 px, m/n = 0.16)

def _operator(task: Task, image_shape: tuple[int, int, int]):
    from ..physics import make, operator_class

    n = int(np.prod(image_shape))
    params = dict(task.operator_params)
    if operator_class(task.operator).counts_measurements:
        m = int(round(task.ratio * n))
        if not 1 <= m <= n:
            raise GSError(f"ratio {task.ratio} gives m = {m} measurements for n = {n}")
        params["m"] = m
    key = (task.operator, tuple(sorted(params.items())), tuple(image_shape), task.seed)
    op = cached("operator", key, lambda: make(task.operator, image_shape, task.seed, **params))
    return op, op.m


# ------------------------------------------------------------------------------------------ images

def task_image(task: Task, man, device: str = "cpu", threads: int = 0) -> np.ndarray:
    """The ground-truth image of a task, float32 (C, H, W) in [0, 1]."""
    from ..io.images import load_image

    if task.image == "generated":
        gen = generator_for(man, 0, device, threads)
        (name,) = gen.inputs
        z = np.random.default_rng([task.seed, task.index, 7]).standard_normal((1, *gen.shapes[name]))
        return np.clip(gen.forward({name: z.astype(np.float32)})[0], 0.0, 1.0).astype(np.float32)
    return load_image(task.image, man.image_shape[1])


# --------------------------------------------------------------------------------------------- run

#: Task options that set the budget and stopping rule (read below), not a Settings field of their own.
_PLAN_OPTIONS = ("budget", "restarts", "stop", "holdout", "patience", "trace")


def _settings(task: Task, man, device: str, threads: int):
    """The task's method settings (one seed for every image: the solver adds the image index): the options the
    method reads (its :attr:`~gs_onnx.solve.registry.Method.settings`), and for a restart method its cut, init,
    budget and stopping rule."""
    import dataclasses as dc

    from ..solve.settings import UPPER, Settings

    m = method_of(task.method)
    opts = dict(task.options)
    s = Settings(model=str(man.root) if "model" in m.settings else None, seed=task.seed, device=device,
                 threads=threads)
    fields = {f.name for f in dc.fields(Settings)}
    for k, v in opts.items():
        if k not in _PLAN_OPTIONS and k in fields and k in m.settings:
            setattr(s, k, v)
    if not m.restarts:
        if "max_iter" in m.settings:
            s.max_iter = task.max_iter
        return s
    s.cut = 0 if task.method == NOGS else task.cut
    s.init, s.max_iter, s.max_fun, s.restarts = task.init, task.max_iter, task.max_fun, 1
    s.budget, s.stop = "paper", None
    if runs_plan(task):  # the validated plan as gs-recover runs it: its own restarts and budget, all in one task
        s.budget, s.restarts = "auto", opts.get("restarts")
    elif opts.get("stop") == "holdout":  # traced to max_iter (<= the patience's bound): the stop is replayed on the trace
        s.stop, s.holdout, s.patience = "holdout", float(opts.get("holdout", 0.1)), UPPER["patience"]
    return s


def _solver(task: Task, man, op, m: int, y: np.ndarray, device: str, threads: int):
    """The method's solver (gs_onnx.solve.methods, the same code as gs-recover), cached for the next task of the
    same model, cut, operator and settings."""
    from ..solve.registry import make_solver
    from ..solve.settings import resolve_cut

    s = _settings(task, man, device, threads)
    meth = method_of(task.method)
    method = meth.name
    sidecar = {"operator": op.describe(), "image_shape": list(man.image_shape), "m": m, "n": man.n}
    if not meth.restarts:
        return make_solver(method, y.reshape(1, -1), sidecar, s, op=op)
    s.cut = resolve_cut(man, s.cut)
    key = (method, str(man.root), s.cut, task.operator, task.operator_params, m, man.n, task.seed, device, threads,
           s.init, s.max_iter,
           s.max_fun, s.codes, s.budget, s.stop, s.holdout, s.patience, s.restarts, s.skip_prior, s.lam, s.gamma,
           id(op))
    return cached("solver", key, lambda: make_solver(method, y.reshape(1, -1), sidecar, s, op=op))


class _Trace:
    """Every iterate of a traced restart (``gs-experiment budget``): iteration, f (fitted rows), the held-out
    loss, PSNR and ||A clamp(x) - y|| (all rows) of its image, and the seconds spent so far without the
    tracing itself."""

    def __init__(self, solver, op, x: np.ndarray, y: np.ndarray, t0: float):
        self.solver, self.op, self.x, self.y, self.t0 = solver, op, x, y.reshape(1, -1), t0
        self.spent = 0.0
        self.data: dict[str, list] = {k: [] for k in ("iteration", "f", "held", "psnr", "err", "seconds")}

    def observe(self, restart: int, iteration: int, z, f: float, held: float) -> None:
        from ..metrics import psnr

        t = time.perf_counter()
        tmpl = self.solver.template
        img = np.clip(tmpl.image(tmpl.layout.unpack(np.asarray(z)[None]))[0], 0.0, 1.0)
        err = float(np.linalg.norm((self.op.forward(img.reshape(1, -1)) - self.y).astype(np.float64)))
        d = self.data
        for k, v in (("iteration", iteration), ("f", round(f, 8)), ("held", round(held, 8)),
                     ("psnr", round(psnr(img, self.x), 4)), ("err", round(err, 6)),
                     ("seconds", round(t - self.t0 - self.spent, 4))):
            d[k].append(v)
        self.spent += time.perf_counter() - t


def run_task(task: Task, *, models_dir: str | None = None, device: str = "cpu", threads: int = 0) -> dict[str, Any]:
    """Run one task and return its results row (the task's fields plus what was measured).

    Row fields added: ``psnr`` (dB, clamped image vs ground truth), ``measurement_error`` (||A x - y||,
    the restart-selection criterion), ``objective``, ``evaluations``, ``seconds``, ``m``, ``n``,
    ``sigma``, ``cut`` (resolved), ``free_parameters`` (what the method optimises), ``budget``,
    ``provider`` (the execution provider that really ran), ``host``.
    """
    from ..metrics import psnr
    from ..physics import measure, sigma_for

    if task.method == SAMPLES:
        from .samples import run_samples

        return run_samples(task, models_dir=models_dir, device=device, threads=threads)
    restarts = runs_restarts(task.method)  # GSError for an unknown method, before any work
    t0 = time.perf_counter()
    man = manifest_for(task.model, models_dir)
    x = task_image(task, man, device, threads)
    op, m = _operator(task, tuple(man.image_shape))
    sigma = (task.sigma if task.sigma is not None else sigma_for("auto", op)) if task.noise else 0.0
    y = measure(x.reshape(1, -1), op, sigma, task.seed + task.index)[0]
    row = task.as_dict()
    row.update({"m": m, "n": man.n, "sigma": sigma, "host": platform.node(), "pid": os.getpid(),
                "model_sha256": model_digest(man)})
    if task.operator_params or task.sigma is not None:
        row["setting"] = task.setting()
    if not restarts and task.restart != 0:
        raise GSError(f"{task.method} runs once per image: restart must be 0")
    solver = _solver(task, man, op, m, y, device, threads)
    h = solver.header
    if restarts:
        opts = dict(task.options)
        trace = _Trace(solver, op, x, y, time.perf_counter()) if opts.get("trace") else None
        if runs_plan(task):
            image, fields = solver.solve(task.index, y, lambda f, msg: None)
        else:
            image, fields = solver.solve(task.index, y, lambda f, msg: None, restart=task.restart,
                                         trace=None if trace is None else trace.observe)
        extra = {"codes": h["codes"]} if "codes" in h else {}
        if "skip_prior" in h:  # the weight that ran (given, or the model's recommended one)
            extra["skip_prior"] = h["skip_prior"]["weight"]
        if trace is not None:
            extra["trace"] = trace.data
        extra["stopping"] = h.get("stopping")
        extra["restarts_run"] = [{k: r.get(k) for k in ("restart", "iterations", "evaluations", "best_iteration",
                                                        "held_out", "measurement_error")}
                                 for r in fields["restarts"]]
        row.update({"cut": h["cut"], "measurement_error": fields["measurement_error"], "objective": fields["objective"],
                    "evaluations": fields["evaluations"], "iterations": fields["restarts"][0]["iterations"],
                    "free_parameters": int(h["free_values"]), "provider": h["provider"], "budget": h["budget"],
                    **extra})
    else:
        image, fields = solver.solve(0, y, lambda f, msg: None)
        free = h.get("free_values") or h.get("parameters")
        row.update({"cut": h.get("cut"), "measurement_error": fields["measurement_error"],
                    "objective": fields.get("objective"), "evaluations": fields.get("evaluations"),
                    "free_parameters": int(free) if free is not None else None, "provider": h.get("provider", ""),
                    "budget": {k: h[k] for k in ("solver", "optimizer", "lam", "channels") if k in h}})
    row["psnr"] = psnr(image, x)
    anchor = getattr(solver, "last_gs_image", None)
    if anchor is not None:  # a method refining gs's image (gs-tv): gs alone, the same run, its PSNR for free
        row["gs_psnr"] = psnr(anchor, x)
    if man.lattice_cell:  # a model with a skip source: how much its lattice shows, beside the truth's
        from ..metrics import seam

        row["seam"] = round(seam(image, man.lattice_cell), 4)
        row["seam_truth"] = round(seam(x, man.lattice_cell), 4)
    row["seconds"] = time.perf_counter() - t0
    return row
