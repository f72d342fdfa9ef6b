"""What a recovery was asked for and what it resolves to: :class:`Settings` (every ``gs-recover`` option, ``None``
for the method's default), their checks, the model and cut they name, and the budget and stopping plan they run
(:func:`recovery_plan`, the one place budgets are resolved).

Every method reads its settings from here; which settings a method reads is one of its traits
(:attr:`gs_onnx.solve.registry.Method.settings`).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ..errors import GSError
from ..generator import registry as models
from ..generator.manifest import MAX_ITERATIONS, MAX_RESTARTS, Manifest


@dataclasses.dataclass
class Settings:
    """What ``gs-recover`` was asked for; ``None`` means the method's default.

    ``restarts``, ``max_iter``, ``max_fun``, ``init``: the L-BFGS-B budget of gs and mganprior;
    ``seed``: image i uses ``seed + i``; ``lam``: Lasso-DCT's l1 weight, TV's weight; ``codes``: mGANprior's N;
    ``steps``/``lr``: Adam steps and rate (Deep Decoder; IAGAN's latent phase); ``finetune_steps``/
    ``finetune_lr``: IAGAN's joint phase; ``channels``: Deep Decoder width; ``batch``: how gs shares
    evaluations between restarts and images (:data:`gs_onnx.solve.restart.BATCH_MODES`, or ``auto``: the device's
    default, :func:`default_batch`); ``engine``: the objective's engine (:data:`gs_onnx.solve.objective.ENGINES`);
    ``operator_on``, ``cuda_graph``: options of the composed engine; ``budget``: ``auto`` (the model's
    validated stopping plan, :func:`gs_onnx.solve.stopping.stopping_plan`) or ``paper`` (3 restarts x 500
    iterations, every measurement fitted); ``stop``, ``holdout``, ``patience``: the stopping rule and its
    settings (:mod:`gs_onnx.solve.stopping`), overriding the plan's; ``denoiser``: the ONNX denoiser of the
    plug-and-play methods (a name in ``models/priors`` or a folder).
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
    denoiser: str | None = None
    models_dir: str | None = None


#: Settings every method accepts (where they run, the seed, where models are looked up).
UNIVERSAL = frozenset({"seed", "models_dir", "device", "threads"})

#: Upper bounds of the counts a command line gives (a mistyped 100000 restarts fails at once, not hours later).
#: The optimiser's counts share the manifest's bounds (one home: gs_onnx.generator.manifest).
UPPER = {"restarts": MAX_RESTARTS, "max_iter": MAX_ITERATIONS, "max_fun": MAX_ITERATIONS, "codes": 1000,
         "steps": 10_000_000, "channels": 4096, "batch_size": 4096, "patience": MAX_ITERATIONS}

_FLAG = {"max_iter": "--max-iter", "max_fun": "--max-fun", "finetune_steps": "--finetune-steps",
         "finetune_lr": "--finetune-lr", "operator_on": "--operator-on", "cuda_graph": "--cuda-graph"}


def flag(name: str) -> str:
    """The command-line flag of a :class:`Settings` field: ``max_iter`` -> ``--max-iter``."""
    return _FLAG.get(name, "--" + name.replace("_", "-"))


def check_settings(method: str, s: Settings, reads: frozenset[str] | None = None) -> None:
    """Refuse settings that ``method`` does not read (``reads``: its :attr:`Method.settings`; None: no check of
    which), and out-of-range values."""
    if reads is not None:
        for f in dataclasses.fields(Settings):
            if f.name in UNIVERSAL:
                continue
            if getattr(s, f.name) is not None and f.name not in reads:
                raise GSError(f"{flag(f.name)} does not apply to --method {method}")
    for name in ("restarts", "max_iter", "max_fun", "codes", "steps", "channels", "batch_size", "patience"):
        v = getattr(s, name)
        if v is not None and v < 1:
            raise GSError(f"{flag(name)} must be >= 1")
        if v is not None and v > UPPER[name]:
            raise GSError(f"{flag(name)} {v} is above {UPPER[name]}")
    for name in ("lr", "finetune_lr"):
        v = getattr(s, name)
        if v is not None and not v > 0:
            raise GSError(f"{flag(name)} must be > 0")
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
    cores = os.cpu_count() or 1
    if not 0 <= s.threads <= cores:
        raise GSError(f"--threads must be between 0 (all cores) and {cores}, the cores of this machine")


# ------------------------------------------------------------------------------------- the model and cut

def model_for(sidecar: dict, s: Settings) -> Manifest:
    """The model named by ``--model`` or the sidecar (or the default), checked against the measurements."""
    named = sidecar.get("model")
    if s.model is None and named is not None and (not isinstance(named, str) or "/" in named or "\\" in named
                                                  or named in (".", "..") or Path(named).is_absolute()):
        # a folder comes from the command line (--model FOLDER), never from a file someone else wrote
        raise GSError(f"the sidecar names the model {str(named)[:80]!r}, which is not an installed model's name: a "
                      "sidecar may name a model, not a folder; pass --model NAME_OR_FOLDER to choose one")
    man = models.load(s.model or named or models.default_model(), s.models_dir)
    if list(sidecar.get("image_shape", [])) != list(man.image_shape):
        shape = tuple(sidecar.get("image_shape", []))
        fits = [name for name, folder in models.available(s.models_dir).items()
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


#: The Lasso-DCT warm start (``--init lasso``, the paper's Fig. 6), an init beyond
#: :data:`gs_onnx.generator.latent.INITS`: the cut generator fitted (A = I) to the Lasso-DCT estimate, then GS from
#: there (:func:`gs_onnx.solve.methods._restart.lasso_warm_start`).
WARM_INIT = "lasso"


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


# ------------------------------------------------------------------------------------------ optimisers

#: How report.json names each optimiser.
OPTIMIZER_WORDS = {"scipy": "scipy L-BFGS-B", "lbfgs": "torch L-BFGS semantics, batched (gs_onnx.solve.lbfgs)",
                   "adam": "torch Adam semantics, batched (gs_onnx.solve.adam)"}
#: Adam's learning rate unless --lr says: the best of 0.01, 0.03, 0.1, 0.3 (21.2, 23.5, 25.5, 24.8 dB) on one bundled
#: face, dcgan c = 1, Gaussian m/n 0.163, 100 iterations (the paper's L-BFGS: 28.2 dB). Not validated further.
ADAM_LR = 0.1
#: The paper's torch L-BFGS learning rates per architecture (DCGAN 0.1, BEGAN and VAE 1).
PAPER_LR = {"dcgan": 0.1, "began": 1.0, "vae": 1.0}


def adam_settings(s: Settings, budget):
    """Adam's settings for a budget: ``--lr`` (default :data:`ADAM_LR`), ``budget.max_iter`` iterations."""
    from .adam import AdamSettings

    return AdamSettings(lr=ADAM_LR if s.lr is None else s.lr, iterations=budget.max_iter)


def lbfgs_lr(man, s: Settings) -> float:
    """The paper's L-BFGS learning rate: ``--lr``, else the model's recommended one, else the paper's for its
    architecture."""
    if s.lr is not None:
        return s.lr
    return float(man.recommended.get("lbfgs", {}).get("lr", PAPER_LR.get(man.architecture, 1.0)))


# --------------------------------------------------------------------------------------- budgets and plans

def restart_budget(man: Manifest, max_iter: int | None = None, max_fun: int | None = None):
    """The L-BFGS-B budget per restart: the model's recommended iterations (default 500) and history, and
    1.25 evaluations per iteration, unless given."""
    from .restart import Budget

    opt = man.recommended.get("optimizer", {})
    max_iter = int(opt.get("max_iter", 500)) if max_iter is None else max_iter
    max_fun = int(max_iter * 1.25) if max_fun is None else max_fun
    return Budget(max_iter=max_iter, max_fun=max_fun, history=int(opt.get("history", 100)))


BUDGETS = ("auto", "paper")


def recovery_plan(man: Manifest, s: Settings, operator: str | None, planned: bool = True):
    """(restarts, Budget, StopRule) for ``s``: the one place budgets and stopping rules are resolved.

    ``--budget auto`` for a ``planned`` method (gs, gs-tv): the model's validated plan for this operator
    (:func:`gs_onnx.solve.stopping.stopping_plan`); ``--budget paper``, and any method the plan was not validated
    for: the paper's 3 restarts x the manifest's iterations (500) with every measurement fitted. ``--restarts``,
    ``--max-iter``, ``--max-fun``, ``--stop``, ``--holdout`` and ``--patience`` override the plan.
    """
    from .stopping import RULES, StopRule, rule_from, stopping_plan

    budget = s.budget or "auto"
    if budget not in BUDGETS:
        raise GSError(f"unknown --budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    opt = man.recommended.get("optimizer", {})
    paper = {"rule": "fixed", "restarts": int(opt.get("restarts", 3)), "max_iter": int(opt.get("max_iter", 500))}
    plan = stopping_plan(man.recommended, operator) if budget == "auto" and planned else paper
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


def unvalidated_note(man: Manifest, s: Settings, operator: str | None, planned: bool, restarts: int,
                     max_iter: int) -> str | None:
    """A one-line note where ``--budget auto`` falls back to the paper's budget (``restarts`` x ``max_iter``, as
    :func:`recovery_plan` resolved it) because the model's stopping plan was not validated on this operator and
    no budget flag was given: it can take many times longer."""
    from .stopping import has_plan

    if (s.budget or "auto") != "auto" or not planned or operator is None or not has_plan(man.recommended):
        return None
    if any(v is not None for v in (s.restarts, s.max_iter, s.stop)) or has_plan(man.recommended, operator):
        return None
    return (f"{man.name}'s stopping plan was not validated on {operator} measurements: running the paper's budget "
            f"({restarts} restarts x {max_iter} iterations); --restarts 1 --max-iter 200 is "
            "several times faster (docs/physics.md, Budgets)")
