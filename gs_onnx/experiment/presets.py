"""The paper's experiments as lists of :class:`~gs_onnx.experiment.task.Task`, one builder per figure.

Every builder takes a :class:`Config` (models, datasets, number of images, ratios, methods, budgets) whose
defaults follow the paper (``docs/experiments.md``), checks it (unknown models, cuts, datasets, ratios and
methods are refused before any work starts) and returns the tasks in an order that keeps one model and one
ratio together, so a worker reuses its cut generator and its dense A.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

from ..generator import registry
from ..errors import GSError
from ..io.images import list_images
from ..generator.latent import INITS
from ..physics import make
from ..solve.settings import WARM_INIT
from .task import NOGS, Task, method_of

#: The paper's measurement grid (m/n; 64 px: m = 100..6000, 128 px: m = 400..24000).
PAPER_RATIOS = (0.0081, 0.0163, 0.0244, 0.0326, 0.0488, 0.0814, 0.1628, 0.2441, 0.3255, 0.4883)
PAPER_MODELS = ("dcgan", "began", "vae")
#: The paper's raw-reconstruction budget: 100 outer steps of up to 20 L-BFGS iterations (VAE: 40 steps).
RAW_STEPS = {"vae": 40}
INNER_ITERS = 20
PAPER_INITS = ("zero", "cn01", "normal5", "normal10", WARM_INIT)
#: Named datasets: folder under the data root for (64 px, 128 px) models.
DATASETS = {
    "celeba-test": ("celeba_crops64/test", "celeba_aligned/test"),
    "celeba-train": ("celeba_crops64/train", "celeba_aligned/train"),
    "coco": ("coco/test", "coco/test"),
}


def user_data_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/gs-onnx/data`` (default ``~/.local/share/gs-onnx/data``) on
    Linux, ``~/Library/Application Support/gs-onnx/data`` on macOS, ``%LOCALAPPDATA%\\gs-onnx\\data`` on
    Windows."""
    import sys

    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "gs-onnx" / "data"


def default_data_root() -> Path:
    """Where the named data sets live unless ``--data-root`` says: ``$GS_ONNX_DATA``, else :func:`user_data_dir`
    (``gs-experiment data`` lays a downloaded CelebA and COCO out there; docs/experiments.md, Data)."""
    env = os.environ.get("GS_ONNX_DATA")
    return Path(env) if env else user_data_dir()


@dataclasses.dataclass
class Config:
    """What to run. ``None`` fields take the preset's (paper) default."""

    models: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    images: int = 20
    ratios: tuple[float, ...] | None = None
    methods: tuple[str, ...] | None = None
    restarts: int | None = None
    seed: int = 0
    max_iter: int | None = None
    cut: int | None = None
    cuts: tuple[int, ...] | None = None
    inits: tuple[str, ...] | None = None
    untrained: str | None = None
    operator: str = "gaussian"
    steps: int | None = None
    finetune_steps: int | None = None
    #: gs's skip-source prior weight (None: the model's recommended weight; gs_onnx.solve.skipprior)
    skip_prior: float | None = None
    lasso_iter: int | None = None
    count: int = 8
    data_root: str | None = None
    models_dir: str | None = None
    holdouts: tuple[float, ...] | None = None
    rules: tuple[str, ...] | None = None
    factors: tuple[int, ...] | None = None
    conditions: tuple[str, ...] | None = None
    #: ``auto``: the model's stopping plan as ``gs-recover --budget auto`` runs it (one task per image runs every
    #: restart); ``paper``: the paper's 3 restarts x 500 iterations, one task per restart
    budget: str = "auto"
    #: only count the tasks: data sets that are missing are listed in ``missing`` instead of refused
    dry_run: bool = False
    missing: list = dataclasses.field(default_factory=list)


#: Restarts of the paper's budget (``--budget paper``) unless ``--restarts`` says.
PAPER_RESTARTS = 3
BUDGETS = ("auto", "paper")


# ------------------------------------------------------------------------------------------ checks

def _manifest(name: str, cfg: Config):
    return registry.load(name, cfg.models_dir, verify=False)


def dataset_images(name: str, image_size: int, n: int, cfg: Config) -> list[str]:
    """The first ``n`` images of a named dataset (or a folder) for a model of ``image_size`` px, or
    ``["generated"] * n`` for images the generator makes."""
    if n < 1:
        raise GSError("--images must be >= 1")
    if name == "generated":
        return ["generated"] * n
    if name in DATASETS:
        root = Path(cfg.data_root) if cfg.data_root else default_data_root()
        folder = root / DATASETS[name][0 if image_size <= 64 else 1]
        if not folder.is_dir():
            why = (f"dataset {name}: {folder} not found: lay out CelebA and COCO there with 'gs-experiment data' "
                   "(docs/experiments.md, Data), or give --data-root DIR, $GS_ONNX_DATA or --datasets FOLDER")
            if cfg.dry_run:
                if why not in cfg.missing:
                    cfg.missing.append(why)
                return [f"{name}:{i}" for i in range(n)]
            raise GSError(why)
    else:
        folder = Path(name)
        if not folder.is_dir():
            raise GSError(f"unknown dataset {name!r}: use {', '.join(list(DATASETS) + ['generated'])} or a folder")
    files = list_images(folder)
    if len(files) < n:
        raise GSError(f"dataset {name} has {len(files)} images, fewer than --images {n}")
    return [str(p) for p in files[:n]]


def _dataset_label(name: str) -> str:
    return name if name in DATASETS or name == "generated" else Path(name).name


def _check_ratios(ratios: tuple[float, ...]) -> tuple[float, ...]:
    for r in ratios:
        if not 0 < r <= 1:
            raise GSError(f"ratio {r} is outside (0, 1]")
    return tuple(float(r) for r in ratios)


def _check_methods(methods: tuple[str, ...], restarts_only: bool = False) -> tuple[str, ...]:
    """Every method registered (or ``nogs``); with ``restarts_only`` (experiments about start latents, weights or
    cuts) every method one that runs restarts from start latents (a trait of the method, not a list here)."""
    for name in methods:
        m = method_of(name)
        if restarts_only and not m.restarts:
            raise GSError(f"method {name!r} does not start from latents: this experiment takes {NOGS} or a method "
                          "that does (gs, mganprior, ...)")
    return tuple(methods)


def label(method: str) -> str:
    """A method's name for legends: its registered label (``GS``, ``Lasso-DCT``), ``no GS (c=0)`` for nogs."""
    if method == NOGS:
        return "no GS (c=0)"
    try:
        return method_of(method).label or method
    except GSError:  # a results file of a method that is not installed here
        return method


def _cut(man, cut: int | None) -> int:
    from ..solve.settings import resolve_cut

    return resolve_cut(man, cut)  # GSError for a cut the model does not have


def _options(cfg: Config, method: str, plan: bool = False) -> tuple:
    o = {}
    if plan:  # the model's stopping plan, its restarts unless --restarts says
        o["budget"] = "auto"
        if cfg.restarts is not None:
            o["restarts"] = cfg.restarts
    reads = method_of(method).settings
    for name in ("steps", "skip_prior", "finetune_steps"):
        if name in reads and getattr(cfg, name) is not None:
            o[name] = getattr(cfg, name)
    return tuple(sorted(o.items()))


def _recovery_tasks(preset: str, cfg: Config, model: str, man, cut: int, datasets, ratios, methods, *,
                    operator: str | None = None, noise: bool = True, inits=("cn01",), variant: str = "",
                    max_iter: int | None = None, budget: str | None = None) -> list[Task]:
    """The tasks of one model and cut over data sets, ratios, methods and inits. ``budget`` (default the
    config's): ``auto`` gives gs, nogs and mganprior one task per image running the model's plan (every restart,
    as ``gs-recover``); ``paper`` one task per restart."""
    budget = budget or cfg.budget
    if budget not in BUDGETS:
        raise GSError(f"unknown --budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    out = []
    for ds in datasets:
        images = dataset_images(ds, man.image_shape[1], cfg.images, cfg)
        for ratio in ratios:
            for method in methods:
                for init in inits:
                    starts = method_of(method).restarts
                    plan = starts and budget == "auto"
                    restarts = 1 if plan or not starts else cfg.restarts or PAPER_RESTARTS
                    for i, path in enumerate(images):
                        for r in range(restarts):
                            out.append(Task(
                                preset=preset, model=model, method=method, dataset=_dataset_label(ds), image=path,
                                index=i, ratio=ratio, operator=operator or cfg.operator, noise=noise,
                                cut=0 if method == NOGS else (cut if starts else None),
                                restart=r, seed=cfg.seed, init=init if starts else "-",
                                max_iter=max_iter if starts else (
                                    cfg.lasso_iter if "max_iter" in method_of(method).settings else None),
                                options=_options(cfg, method, plan), variant=variant))
    return out


# ----------------------------------------------------------------------------------------- presets

def cs(cfg: Config) -> list[Task]:
    """Fig. 2: PSNR vs m/n for no-GS, GS and Lasso-DCT, per model, on CelebA test and COCO."""
    methods = _check_methods(cfg.methods or ("nogs", "gs", "lasso-dct"))
    ratios = _check_ratios(cfg.ratios or PAPER_RATIOS)
    out = []
    for model in cfg.models or PAPER_MODELS:
        man = _manifest(model, cfg)
        out += _recovery_tasks("cs", cfg, model, man, _cut(man, cfg.cut), cfg.datasets or ("celeba-test", "coco"),
                               ratios, methods, max_iter=cfg.max_iter)
    return out


def baselines(cfg: Config) -> list[Task]:
    """Fig. 3 and Table 1: GS vs mGANprior vs Deep Decoder vs IAGAN (rows carry ``free_parameters``)."""
    methods = _check_methods(cfg.methods or ("gs", "mganprior", "deep-decoder", "iagan"))
    ratios = _check_ratios(cfg.ratios or PAPER_RATIOS)
    out = []
    for model in cfg.models or ("dcgan",):
        man = _manifest(model, cfg)
        out += _recovery_tasks("baselines", cfg, model, man, _cut(man, cfg.cut), cfg.datasets or ("celeba-test",),
                               ratios, methods, max_iter=cfg.max_iter)
    return out


def raw(cfg: Config) -> list[Task]:
    """Fig. 4 left: A = I, no noise, c = 0 vs the cut, on generated, train, test and COCO images.

    On generated images c = 0 can represent the image exactly, so its error is optimisation error; on real
    images the gap to the cut is representation error. Budget: the paper's 100 steps x 20 iterations
    (VAE 40 steps) unless ``max_iter`` is given.
    """
    methods = _check_methods(cfg.methods or ("nogs", "gs"), restarts_only=True)
    out = []
    for model in cfg.models or PAPER_MODELS:
        man = _manifest(model, cfg)
        name = man.architecture
        its = cfg.max_iter or RAW_STEPS.get(name, 100) * INNER_ITERS
        out += _recovery_tasks("raw", cfg, model, man, _cut(man, cfg.cut),
                               cfg.datasets or ("generated", "celeba-train", "celeba-test", "coco"), (1.0,), methods,
                               operator="identity", noise=False, max_iter=its, budget="paper")
    return out


def untrained(cfg: Config) -> list[Task]:
    """Fig. 4 right: GS with the trained weights vs the same architecture randomly initialised.

    The untrained twin is ``cfg.untrained`` or the installed model ``<model>-untrained``; make one with
    ``gs-export untrained ARCH --out models/<model>-untrained`` (torch).
    """
    methods = _check_methods(cfg.methods or ("gs",), restarts_only=True)
    ratios = _check_ratios(cfg.ratios or PAPER_RATIOS)
    out = []
    for model in cfg.models or ("dcgan",):
        man = _manifest(model, cfg)
        twin_name = cfg.untrained or f"{man.name}-untrained"
        try:
            twin = _manifest(twin_name, cfg)
        except GSError:
            raise GSError(f"no untrained twin {twin_name!r} of {man.name}: make one with 'gs-export untrained "
                          f"--arch {man.architecture} --config '{json.dumps(man.config)}' --name {man.name}-untrained "
                          f"--out models/{man.name}-untrained' or pass --untrained") from None
        if list(twin.image_shape) != list(man.image_shape) or twin.architecture != man.architecture:
            raise GSError(f"{twin_name} is not a twin of {man.name} (architecture or image size differ)")
        cut = _cut(man, cfg.cut)
        for variant, name, m in (("trained", model, man), ("untrained", twin_name, twin)):
            out += _recovery_tasks("untrained", cfg, name, m, cut, cfg.datasets or ("celeba-test",), ratios, methods,
                                   variant=variant, max_iter=cfg.max_iter)
    return out


def init(cfg: Config) -> list[Task]:
    """Fig. 6: zero, CN(0,1), N(0,5), N(0,10) and the Lasso-DCT warm start, GS at the model's cut."""
    inits = tuple(cfg.inits or PAPER_INITS)
    for i in inits:
        if i not in INITS + (WARM_INIT,):
            raise GSError(f"unknown init {i!r}: choose from {', '.join(INITS + (WARM_INIT,))}")
    methods = _check_methods(cfg.methods or ("gs",), restarts_only=True)
    ratios = _check_ratios(cfg.ratios or PAPER_RATIOS)
    out = []
    for model in cfg.models or ("dcgan",):
        man = _manifest(model, cfg)
        out += _recovery_tasks("init", cfg, model, man, _cut(man, cfg.cut), cfg.datasets or ("celeba-test",),
                               ratios, methods, inits=inits, max_iter=cfg.max_iter)
    return out


def cuts(cfg: Config) -> list[Task]:
    """Fig. 7: PSNR vs the cut index on a validation split (CelebA train images by default, never test)."""
    ratios = _check_ratios(cfg.ratios or (0.0488, 0.1628))
    out = []
    for model in cfg.models or ("dcgan",):
        man = _manifest(model, cfg)
        all_cuts = [c.cut for c in man.cuts]
        chosen = tuple(cfg.cuts) if cfg.cuts else tuple(all_cuts)
        for c in chosen:
            man.cut(c)
            out += _recovery_tasks("cuts", cfg, model, man, c, cfg.datasets or ("celeba-train",), ratios, ("gs",),
                                   variant=f"c={c}", max_iter=cfg.max_iter)
    return out


#: ``budget``: the rules traced by default and their held-out fractions.
BUDGET_RULES = ("paper", "holdout", "auto")
BUDGET_MODELS = (("dcgan", (0.0488, 0.1628)), ("began", (0.1628,)))


def budget(cfg: Config) -> list[Task]:
    """PSNR vs iterations (and seconds) of GS, traced iterate by iterate, per model and ratio:

    * ``paper``: every measurement fitted, each restart run to ``max_iter`` (default 500): the fixed budgets
      25, 50, 100, 200, 500 are points on these traces;
    * ``holdout``: a fraction of the measurements held out (``--holdouts``, default 0.1) and tracked, each
      restart run to ``max_iter`` too, so that every stopping rule (patience, restarts, pruning, refit) can
      be replayed on the trace (``gs_onnx.experiment.budget``);
    * ``auto``: what ``gs-recover --budget auto`` really runs (the model's validated rule), untraced: its
      PSNR and time.

    Default datasets: CelebA train (validation images, never test); ``--datasets celeba-test,coco`` for the
    final measurement. ``--conditions`` (the ``physics`` preset's: mask10, fourier25, ...) traces those
    measurement models instead of Gaussian compressed sensing at ``--ratios``.
    """
    rules = tuple(cfg.rules or BUDGET_RULES)
    for r in rules:
        if r not in BUDGET_RULES:
            raise GSError(f"unknown rule {r!r} for the budget experiment: choose from {', '.join(BUDGET_RULES)}")
    holdouts = tuple(cfg.holdouts or (0.1,))
    for h in holdouts:
        if not 0 < h < 1:
            raise GSError(f"held-out fraction {h} is outside (0, 1)")
    models = [(m, tuple(cfg.ratios) if cfg.ratios else None) for m in cfg.models] if cfg.models else \
        [(m, r) for m, r in BUDGET_MODELS]
    conditions = _check_conditions(cfg.conditions) if cfg.conditions else None
    if conditions and cfg.ratios:
        raise GSError("--ratios sets Gaussian compressed sensing; --conditions name other measurement models: "
                      "give one of them")
    out = []
    for model, ratios in models:
        man = _manifest(model, cfg)
        cut = _cut(man, cfg.cut)
        for rule in rules:
            for h in (holdouts if rule == "holdout" else (None,)):
                opts = {"stop": rule}
                if rule in ("paper", "holdout"):
                    opts["trace"] = True
                if h is not None:
                    opts["holdout"] = h
                variant = rule if h is None else f"holdout {h:g}"
                max_iter = cfg.max_iter if rule != "auto" else None
                datasets = cfg.datasets or ("celeba-train",)
                if conditions:
                    tasks = [t for name in conditions
                             for t in _condition_tasks("budget", cfg, model, man, cut, datasets,
                                                       *PHYSICS_CONDITIONS[name], ("gs",), variant, max_iter,
                                                       budget="paper")]
                else:
                    tasks = _recovery_tasks("budget", cfg, model, man, cut, datasets,
                                            _check_ratios(ratios or (0.1628,)), ("gs",), variant=variant,
                                            max_iter=max_iter, budget="paper")
                if rule == "auto":  # the rule's own restarts and budget: one task runs every restart
                    tasks = [t for t in tasks if t.restart == 0]
                out += [dataclasses.replace(t, options=tuple(sorted(opts.items()))) for t in tasks]
    return out


# ------------------------------------------------------------------------------------- other physics

#: ``inpaint``: fractions of pixels kept (x axis); ``superres``: downsampling factors.
INPAINT_KEEPS = (0.05, 0.1, 0.2, 0.3, 0.5)
SUPERRES_FACTORS = (2, 4, 8)
#: ``physics``: one condition per measurement model, {name: (operator, parameters, noise sigma or None)}; None:
#: the operator's default noise (0.01 per value for these image-domain operators).
PHYSICS_CONDITIONS = {
    "mask10": ("mask", {"keep": 0.1}, None),
    "mask30": ("mask", {"keep": 0.3}, None),
    "box": ("box", {"box": "centre", "box_size": 0.5}, None),
    "sr4": ("downsample", {"factor": 4}, None),
    "fourier25": ("fourier", {"keep": 0.25, "density": "centre"}, None),
    "blur2": ("blur", {"sigma": 2.0}, None),
    "denoise": ("identity", {}, 0.1),
}


def _physics_tasks(preset: str, cfg: Config, conditions: list[tuple[str, str, dict, float | None]],
                   default_methods: tuple[str, ...]) -> list[Task]:
    """Tasks for (label, operator, parameters, sigma) conditions: every model, dataset, method and image."""
    methods = _check_methods(cfg.methods or default_methods)
    out = []
    for model in cfg.models or ("dcgan", "began"):
        man = _manifest(model, cfg)
        cut = _cut(man, cfg.cut)
        for label_, operator, params, sigma in conditions:
            out += _condition_tasks(preset, cfg, model, man, cut, cfg.datasets or ("celeba-test",), operator, params,
                                    sigma, methods, label_, cfg.max_iter)
    return out


def _condition_tasks(preset: str, cfg: Config, model: str, man, cut: int, datasets, operator: str, params: dict,
                     sigma: float | None, methods, variant: str, max_iter: int | None,
                     budget: str | None = None) -> list[Task]:
    """The tasks of one measurement condition (an operator type, its parameters, the noise): its m/n from the
    operator, which is built here so that bad parameters fail before anything runs."""
    op = make(operator, tuple(man.image_shape), cfg.seed, **params)
    base = _recovery_tasks(preset, cfg, model, man, cut, datasets, (round(op.m / op.n, 6),), methods,
                           operator=operator, max_iter=max_iter, variant=variant, budget=budget)
    return [dataclasses.replace(t, operator_params=tuple(sorted(params.items())), sigma=sigma) for t in base]


def inpaint(cfg: Config) -> list[Task]:
    """PSNR vs the fraction of pixels kept (random-pixel inpainting, ``mask``): no GS vs GS vs Lasso-DCT."""
    keeps = _check_ratios(cfg.ratios or INPAINT_KEEPS)
    return _physics_tasks("inpaint", cfg, [(f"keep {k:g}", "mask", {"keep": k}, None) for k in keeps],
                          ("nogs", "gs", "gs-tv", "lasso-dct", "tv"))


def superres(cfg: Config) -> list[Task]:
    """PSNR vs the super-resolution factor (area ``downsample``): no GS vs GS vs Lasso-DCT."""
    factors = tuple(cfg.factors or SUPERRES_FACTORS)
    for f in factors:
        if f < 2:
            raise GSError(f"factor {f} must be >= 2")
    return _physics_tasks("superres", cfg, [(f"x{f}", "downsample", {"factor": int(f)}, None) for f in factors],
                          ("nogs", "gs", "gs-tv", "lasso-dct", "tv"))


def _check_conditions(names) -> tuple[str, ...]:
    names = tuple(names)
    for n in names:
        if n not in PHYSICS_CONDITIONS:
            raise GSError(f"unknown condition {n!r}: choose from {', '.join(PHYSICS_CONDITIONS)}")
    return names


def physics(cfg: Config) -> list[Task]:
    """One condition per measurement model (inpainting 10 % / 30 %, a missing half-width box, super-resolution
    x4, Fourier 25 % with a fully sampled centre, blur sigma 2 with noise, denoising at sigma 0.1): no GS vs GS."""
    names = _check_conditions(cfg.conditions or PHYSICS_CONDITIONS)
    return _physics_tasks("physics", cfg, [(n, *PHYSICS_CONDITIONS[n]) for n in names], ("nogs", "gs"))


def samples(cfg: Config) -> list[Task]:
    """Fig. 8: a grid of samples from the cut generator at every cut (inputs i.i.d. N(0, 1))."""
    if cfg.count < 1:
        raise GSError("--count must be >= 1")
    out = []
    for model in cfg.models or PAPER_MODELS:
        man = _manifest(model, cfg)
        for c in (tuple(cfg.cuts) if cfg.cuts else [c.cut for c in man.cuts]):
            man.cut(c)
            out.append(Task(preset="samples", model=model, method="samples", dataset="-", image="-", index=0,
                            ratio=0.0, operator="-", noise=False, cut=c, seed=cfg.seed,
                            options=(("count", cfg.count),), variant=f"c={c}"))
    return out


PRESETS: dict[str, Callable[[Config], list[Task]]] = {
    "cs": cs, "baselines": baselines, "raw": raw, "untrained": untrained, "init": init, "cuts": cuts,
    "samples": samples, "budget": budget, "inpaint": inpaint, "superres": superres, "physics": physics,
}
