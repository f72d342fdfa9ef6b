"""The registry of recovery methods: every ``--method`` of ``gs-recover``, the Python API and ``gs-experiment``.

A method is a :class:`Method`: its name, a one-line summary, its traits (does it need a generator? run restarts
from start latents? follow the model's stopping plans? solve a chunk's images together? which operators? which
settings does it read?) and a factory ``(y, sidecar, settings, op=None) -> Solver``. The command line and the
experiments ask a method for its traits (:func:`method`) instead of listing names. Built-in methods live one file
each in :mod:`gs_onnx.solve.methods` and call :func:`register` at import; a method of another package (Deep
Decoder and IAGAN, which need torch) registers a :class:`Method` under the entry-point group
:data:`ENTRY_POINT_GROUP`, its factory named as ``"module:attribute"`` so that reading its traits imports nothing
heavy.

A solver returns, per image, the recovered image (C, H, W) float32 clamped to [0, 1] and its report fields
(``measurement_error`` = ||A x - y||_2 of the clamped image, ``objective``, ``evaluations``, ...).

Examples
--------
>>> from gs_onnx.solve import registry
>>> gs = registry.method("gs")
>>> gs.generator, gs.restarts, "cut" in gs.settings
(True, True, True)
>>> registry.method("tv").generator
False
"""
from __future__ import annotations

import dataclasses
import importlib
from importlib import metadata
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import GSError
from .settings import Settings, check_settings, model_for

ENTRY_POINT_GROUP = "gs_onnx.methods"
#: ``--method auto`` (gs-recover's default): the method the model's manifest recommends for the operator type
#: (``recommended.method``, chosen on validation images), else ``gs`` (:func:`resolve_method`).
AUTO = "auto"

Progress = Callable[[float, str], None]


class Solver(Protocol):
    """One method set up for one measurement file."""

    unit: str          #: what ``evaluations`` counts ("evaluations", "iterations", "steps")
    how: str           #: a few words for the summary line ("on CPUExecutionProvider")
    header: dict       #: the method's fields of report.json

    def solve(self, i: int, y: np.ndarray, progress: Progress) -> tuple[np.ndarray, dict[str, Any]]:
        ...


@dataclasses.dataclass(frozen=True)
class Method:
    """A recovery method and its traits.

    Attributes
    ----------
    name : the ``--method`` name
    summary : one line for ``--help`` and the docs
    factory : ``(y, sidecar, settings, op=None) -> Solver``, or ``"module:attribute"`` naming it (imported on
        first use: a method that needs an optional extra can be listed without it)
    settings : the :class:`~gs_onnx.solve.settings.Settings` fields it reads (others are refused, by flag)
    generator : it needs a model and a cut (``--model``, ``--cut``)
    restarts : it runs restarts from start latents (the experiments run one task per restart under the paper's
        budget; the winner is the lowest measurement error)
    planned : ``--budget auto`` runs the model's validated stopping plan for the operator
    batched : it solves the images of a chunk together (``solve_many``)
    operators : the operator types it handles; None: every operator
    extra : the pip extra it needs beyond the runtime (``export``: torch), or None
    label : a name for legends and tables
    """

    name: str
    summary: str
    factory: Callable[..., Solver] | str
    settings: frozenset[str] = frozenset()
    generator: bool = False
    restarts: bool = False
    planned: bool = False
    batched: bool = False
    operators: tuple[str, ...] | None = None
    extra: str | None = None
    label: str = ""

    def make(self, y: np.ndarray, sidecar: dict, s: Settings, op=None) -> Solver:
        """The solver of this method for measurements ``y`` ((B, m) float32) and their sidecar."""
        kind = (op.describe() or {}).get("type") if op is not None else (sidecar.get("operator") or {}).get("type")
        if self.operators is not None and kind is not None and kind not in self.operators:
            raise GSError(f"--method {self.name} does not handle {kind} measurements (it handles "
                          f"{', '.join(self.operators)})")
        factory = self.factory
        if isinstance(factory, str):
            mod, _, attr = factory.partition(":")
            try:
                factory = getattr(importlib.import_module(mod), attr)
            except ImportError as e:
                if not self.extra:
                    raise GSError(f"--method {self.name}: its module does not load ({e})") from None
                raise GSError(f"--method {self.name} needs {_extra_words(self.extra)}: pip install "
                              f"'gs-onnx[{self.extra}]' ({e})") from None
        return factory(y, sidecar, s, op)


#: What each optional extra of gs-onnx brings, for the error that names it.
EXTRAS = {"export": "torch", "bm3d": "BM3D, non-commercial licence"}


def _extra_words(extra: str) -> str:
    return f"the {extra} extra ({EXTRAS[extra]})" if extra in EXTRAS else f"the {extra} extra"


#: name -> :class:`Method`, built-in methods (filled as :mod:`gs_onnx.solve.methods` is imported).
METHODS: dict[str, Method] = {}


def register(m: Method) -> Method:
    """Make ``m`` a ``--method`` of gs-recover, the Python API and gs-experiment alike; returns it."""
    if not isinstance(m, Method):
        raise GSError(f"register takes a Method, not {type(m).__name__}")
    if m.name in METHODS or m.name == AUTO:
        raise GSError(f"method {m.name!r} is already registered")
    METHODS[m.name] = m
    return m


def unregister(name: str) -> None:
    """Remove a method registered with :func:`register` (tests and notebooks that try a method out)."""
    METHODS.pop(name, None)


def plugins() -> dict[str, metadata.EntryPoint]:
    """Methods registered by installed packages under :data:`ENTRY_POINT_GROUP`."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Every method's name: the built-in ones, then those of installed packages."""
    return list(METHODS) + [n for n in plugins() if n not in METHODS]


def describe() -> list[str]:
    """``name: summary`` of every method (``--help`` lists them), with the extra each needs."""
    out = []
    for name in available():
        try:
            m = method(name)
        except GSError:
            out.append(f"{name}: (its package does not load)")
            continue
        out.append(f"{name}: {m.summary}" + (f" [needs the {m.extra} extra]" if m.extra else ""))
    return out


def method(name: str) -> Method:
    """The :class:`Method` called ``name`` (built in, or registered by an installed package)."""
    if name in METHODS:
        return METHODS[name]
    ep = plugins().get(name)
    if ep is None:
        raise GSError(f"unknown method {name!r}: choose one of {', '.join(available())}")
    try:
        m = ep.load()
    except ImportError as e:
        if getattr(getattr(ep, "dist", None), "name", None) == "gs-onnx":  # this project's own: the torch methods
            raise GSError(f"--method {name} needs {_extra_words('export')}: pip install 'gs-onnx[export]' "
                          f"({e})") from None
        raise GSError(f"--method {name}: its package does not load ({e})") from None
    if not isinstance(m, Method) or m.name != name:
        raise GSError(f"the entry point {name!r} of group {ENTRY_POINT_GROUP} is not a Method named {name!r}")
    return m


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


def resolve_method(name: str, sidecar: dict, s: Settings) -> tuple[str, str | None]:
    """``name``, or for ``auto`` the method the model (``--model``, else the sidecar's) recommends for the
    sidecar's operator type (:func:`recommended_method`), with a line saying why (None when not ``auto``, or
    when the model recommends nothing and ``gs`` runs as ever)."""
    if name != AUTO:
        return name, None
    man = model_for(sidecar, s)
    kind = (sidecar.get("operator") or {}).get("type")
    chosen = recommended_method(man.recommended, kind)
    if chosen not in available():
        raise GSError(f"model {man.name} recommends --method {chosen!r}, which is not installed: choose one of "
                      f"{', '.join(available())}")
    if not man.recommended.get("method"):
        return chosen, None
    return chosen, f"method {chosen}: {man.name}'s recommended method for {kind or 'these'} measurements (--method auto)"


def make_solver(name: str, y: np.ndarray, sidecar: dict, s: Settings, op=None) -> Solver:
    """The solver of method ``name`` for the measurements ``y`` ((B, m) float32) and their sidecar; ``auto``:
    the model's recommended method for the operator (:func:`resolve_method`).

    ``op`` passes an operator already built from the sidecar (``gs-experiment`` keeps a dense A across
    tasks); by default it is rebuilt from the sidecar."""
    name, _ = resolve_method(name, sidecar, s)
    m = method(name)
    check_settings(name, s, m.settings)
    return m.make(y, sidecar, s, op)


def solve_many(solver, first: int, Y: np.ndarray, progress: Callable[[int, float, str], None]):
    """Images ``first, first + 1, ...`` of ``Y`` ((k, m)): the solver's own ``solve_many`` where it batches
    images, else one ``solve`` per image. ``progress(image, fraction of that image, what)``."""
    if hasattr(solver, "solve_many"):
        return solver.solve_many(first, Y, progress)
    return [solver.solve(first + j, Y[j], lambda f, w, _j=j: progress(first + _j, f, w)) for j in range(len(Y))]
