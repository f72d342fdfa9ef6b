"""When to stop: a held-out split of the measurements and the rules that watch it.

The cut generator has far more free values than there are measurements, so the optimiser keeps lowering the
measurement error long after the image stopped improving. A classic remedy in compressed sensing: keep a
seeded fraction of the rows of ``y`` out of the objective and watch the error on them, which needs no ground
truth. The rows held out never enter f or its gradient (the objectives weight each row by ``w``, 0 on
held-out rows).

Rules (:data:`RULES`):

* ``fixed``: no held-out rows; a fixed budget (every restart runs to its ``max_iter``), as the paper did;
* ``holdout``: every restart returns its evaluated point with the lowest held-out error and stops once
  that error has not improved for ``patience`` iterations; the winner among restarts is the lowest
  held-out error;
* ``refit``: as ``holdout``, then each restart is run again from its start on all measurements for as many
  iterations as it took to reach its best held-out error; the winner is chosen by the held-out error of the
  first pass.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import GSError

#: Second entry of the held-out rows' SeedSequence (A's blocks use 0, 1, ...; noise 2**31-1; srdct 2**31-2).
HOLDOUT_STREAM = 2**31 - 3
RULES = ("fixed", "holdout", "refit")


@dataclasses.dataclass(frozen=True)
class StopRule:
    """A stopping rule: its name (:data:`RULES`), the held-out fraction of the rows and the patience in
    iterations."""

    name: str = "holdout"
    holdout: float = 0.1
    patience: int = 30

    def __post_init__(self):
        if self.name not in RULES:
            raise GSError(f"unknown stopping rule {self.name!r}: choose one of {', '.join(RULES)}")
        if self.name != "fixed":
            if not (isinstance(self.holdout, (int, float)) and 0 < self.holdout < 1):
                raise GSError(f"the held-out fraction must be in (0, 1), got {self.holdout!r}")
            if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)) or self.patience < 1:
                raise GSError(f"the patience must be an integer >= 1, got {self.patience!r}")

    @property
    def uses_holdout(self) -> bool:
        return self.name != "fixed"

    def describe(self) -> dict:
        if not self.uses_holdout:
            return {"rule": self.name}
        return {"rule": self.name, "holdout": self.holdout, "patience": self.patience}


PAPER = StopRule("fixed")  # a fixed budget on every measurement, as the paper ran it

#: The keys of a stopping plan (a manifest's ``recommended.stopping``).
PLAN_KEYS = ("rule", "holdout", "patience", "restarts", "max_iter")
#: Operators a plan applies to unless the manifest's ``recommended.stopping.operators`` lists the operator
#: types it was validated on (the dense Gaussian; the structured DCT scales like it); other operators get the
#: paper's fixed budget unless asked.
VALIDATED_OPERATORS = ("gaussian", "srdct")


def stopping_plan(recommended: dict, operator: str | None = None) -> dict:
    """The stopping plan ``--budget auto`` runs for a model (its manifest's ``recommended`` section) and an
    operator type: ``{"rule", "restarts", "max_iter"}`` plus ``holdout`` and ``patience`` for a held-out rule.

    A plan is chosen per model on validation images with ``gs-experiment budget`` and recorded in the manifest
    as ``recommended.stopping`` (the shipped dcgan: 1 restart x 100 iterations; began: stop on 10 % held-out
    measurements with patience 20, 1 restart, at most 200 iterations; docs/results.md). It applies to the
    operator types in ``stopping.operators`` (default :data:`VALIDATED_OPERATORS`); an operator validated
    with a plan of its own has it in ``stopping.per_operator`` (the shipped dcgan: Fourier sampling and blur
    1 x 200, denoising 1 x 50). A model without a plan, and an operator no plan was validated on, get the paper's fixed budget
    (3 restarts x the manifest's 500 iterations, every measurement fitted).

    Examples
    --------
    >>> rec = {"stopping": {"rule": "fixed", "restarts": 1, "max_iter": 100, "operators": ["gaussian", "mask"],
    ...                     "per_operator": {"blur": {"rule": "fixed", "restarts": 1, "max_iter": 200}}}}
    >>> stopping_plan(rec, "mask"), stopping_plan(rec, "blur")["max_iter"], stopping_plan(rec, "fourier")
    ({'rule': 'fixed', 'restarts': 1, 'max_iter': 100}, 200, {'rule': 'fixed', 'restarts': 3, 'max_iter': 500})
    """
    rec = recommended or {}
    opt = rec.get("optimizer", {})
    paper = {"rule": "fixed", "restarts": int(opt.get("restarts", 3)), "max_iter": int(opt.get("max_iter", 500))}
    if not has_plan(rec, operator):
        return paper
    own = (rec["stopping"].get("per_operator") or {}).get(operator)
    stop = rec["stopping"] if own is None else own
    plan = {**paper, **{k: v for k, v in stop.items() if k in PLAN_KEYS}}
    if plan["rule"] != "fixed":
        plan.setdefault("holdout", 0.1)
        plan.setdefault("patience", 30)
    return plan


def has_plan(recommended: dict, operator: str | None = None) -> bool:
    """Whether the model has a stopping plan validated for this operator type (any operator: ``None``), in
    ``recommended.stopping.operators`` or ``per_operator``; otherwise ``--budget auto`` runs the paper's budget."""
    stop = (recommended or {}).get("stopping")
    if not stop:
        return False
    return operator is None or operator in validated_operators(recommended) or \
        operator in (stop.get("per_operator") or {})


def validated_operators(recommended: dict) -> tuple[str, ...]:
    """The operator types a model's main stopping plan was validated on (``recommended.stopping.operators``,
    else :data:`VALIDATED_OPERATORS`); types with a plan of their own are in ``stopping.per_operator``."""
    ops = ((recommended or {}).get("stopping") or {}).get("operators")
    return tuple(ops) if ops else VALIDATED_OPERATORS


def rule_from(plan: dict) -> StopRule:
    if plan.get("rule", "fixed") == "fixed":
        return PAPER
    return StopRule(plan["rule"], float(plan.get("holdout", 0.1)), int(plan.get("patience", 30)))


def holdout_mask(m: int, fraction: float, seed: int) -> np.ndarray:
    """Row weights (m,) float32: 0 on ``round(fraction m)`` rows (at least 1) drawn from
    ``Generator(PCG64(SeedSequence([seed, 2**31 - 3]))).permutation(m)``, 1 elsewhere."""
    k = max(1, int(round(fraction * m)))
    if k >= m:
        raise GSError(f"holding out {k} of {m} measurements leaves none to fit: use a smaller fraction")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), HOLDOUT_STREAM])))
    w = np.ones(m, np.float32)
    w[rng.permutation(m)[:k]] = 0.0
    return w


class EarlyStop(Exception):
    """Raised from the optimiser's callback when a restart's held-out error stopped improving."""


class Tracker:
    """One restart under a rule: the iterate with the lowest held-out error, and when to stop.

    ``on_eval(z, f, f_held)`` after every evaluation; ``on_iter()`` after every completed iteration: the last
    evaluation is the iterate (L-BFGS-B accepts the point its line search evaluated last), so iterate k has
    the values of the last evaluation before the k-th ``on_iter`` (iterate 0 is the start). Under a held-out
    rule ``on_iter`` raises :class:`EarlyStop` once the held-out error has not improved for ``patience``
    iterations. ``observer(iteration, z, f, f_held)``, if given, sees every iterate (``gs-experiment budget``
    traces recoveries with it).
    """

    def __init__(self, rule: StopRule, observer=None):
        self.rule, self.observer = rule, observer
        self.best = math.inf
        self.best_z: np.ndarray | None = None
        self.best_f = math.inf
        self.best_iteration = 0
        self.iterations = 0
        self.evaluations = 0
        self.stopped = False
        self._last: tuple | None = None

    def on_eval(self, z: np.ndarray, f: float, f_held: float) -> None:
        self.evaluations += 1
        self._last = (z, float(f), float(f_held))
        if self.evaluations == 1:
            self._iterate()

    def _iterate(self) -> None:
        z, f, held = self._last
        if self.observer is not None:
            self.observer(self.iterations, z, f, held)
        if held < self.best:
            self.best, self.best_f, self.best_iteration = held, f, self.iterations
            self.best_z = np.array(z, dtype=np.float64, copy=True)

    def on_iter(self) -> None:
        self.iterations += 1
        if self._last is not None:
            self._iterate()
        if self.rule.uses_holdout and self.iterations - self.best_iteration >= self.rule.patience:
            self.stopped = True
            raise EarlyStop

    def reason(self, max_iter: int) -> str:
        if self.stopped:
            return (f"held-out error did not improve for {self.rule.patience} iterations after iteration "
                    f"{self.best_iteration}")
        return f"budget: {self.iterations} of at most {max_iter} iterations"
