"""The operator interface, composition and adjoints, and the registry of operator types.

An :class:`Operator` is a linear map ``A`` from images of shape :attr:`~Operator.in_shape` (C, H, W) to
measurements of shape :attr:`~Operator.out_shape`, applied to batches. Every method takes either flat rows
``(B, n)`` (what the solvers use: ``n = prod(in_shape)``) or shaped batches ``(B, *in_shape)`` and answers in
the same form. Subclasses implement :meth:`~Operator._forward` and :meth:`~Operator._adjoint` on flat float32
rows, :meth:`~Operator.describe` and :meth:`~Operator.from_description`, and register with
:func:`register`; composition (``A @ B``), adjoints (``A.H``), checks, the dense matrix of a small operator
and the fingerprint come from here.
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod  # noqa: F401
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import GSError

#: Dense matrices (:meth:`Operator.matrix`) of operators without a stored one are built up to this many entries.
MAX_DENSE_ENTRIES = 1 << 28


def _probe(n: int) -> np.ndarray:
    """The fingerprint's probe: (1, n) float32 from PCG64(SeedSequence([2**31 - 4])), values in [0, 1)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([2**31 - 4])))
    return rng.random((1, n), dtype=np.float32)


def check_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A shape as a tuple of positive ints, or a one-line error naming ``what``."""
    try:
        t = tuple(shape)
    except TypeError:
        raise GSError(f"{what} must be a shape (a list of positive integers), got {shape!r}") from None
    if not t or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in t):
        raise GSError(f"{what} must be a list of positive integers, got {shape!r}")
    return tuple(int(v) for v in t)


def check_int(v: Any, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise GSError(f"{what} must be an integer {rng}, got {v!r}")
    return int(v)


def check_float(v: Any, what: str, lo: float, hi: float, *, lo_open: bool = True, hi_open: bool = False) -> float:
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise GSError(f"{what} must be a number in {interval}, got {v!r}")
    return float(v)


@dataclasses.dataclass(frozen=True)
class Param:
    """A parameter an operator type takes from the command line (``gs-measure --NAME``) and from experiments.

    ``kind``: ``float``, ``int``, ``str`` or ``bool`` (a flag); ``choices`` for strings; ``help`` says what it
    is and its default."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


class Operator(ABC):
    """A linear map ``A``: images of shape ``in_shape`` -> measurements of shape ``out_shape``.

    Attributes
    ----------
    in_shape, out_shape : tuple of int
        Per-sample shapes; ``n = prod(in_shape)``, ``m = prod(out_shape)``.
    m, n : int
        Numbers of measurements and of image values (rows and columns of ``A`` as a matrix).
    type : str
        The registry name (``describe()["type"]``).
    params : tuple of :class:`Param`
        What ``gs-measure`` and the experiments may set (besides the image shape and the seed).
    noise_default : "paper" or float
        The noise ``gs-measure --noise auto`` adds: the paper's rule for compressed sensing
        (:func:`gs_onnx.physics.noise.paper_sigma`), or a per-value standard deviation for image-domain
        operators.
    counts_measurements : bool
        True where the number of measurements is free (``--m`` / ``--ratio``: gaussian, srdct).

    Examples
    --------
    >>> import numpy as np
    >>> from gs_onnx.physics import Blur, Downsample
    >>> A = Downsample((3, 64, 64), factor=4) @ Blur((3, 64, 64), sigma=1.0)   # blur, then downsample
    >>> A.in_shape, A.out_shape
    ((3, 64, 64), (3, 16, 16))
    >>> x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    >>> A(x).shape, A.H(A(x)).shape, A(x.reshape(2, -1)).shape
    ((2, 3, 16, 16), (2, 3, 64, 64), (2, 768))
    """

    type: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    noise_default: ClassVar[str | float] = 0.01
    counts_measurements: ClassVar[bool] = False

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def _set_shapes(self, in_shape, out_shape) -> None:
        self.in_shape = check_shape(in_shape, f"{self.type or type(self).__name__} input shape")
        self.out_shape = check_shape(out_shape, f"{self.type or type(self).__name__} output shape")

    @property
    def n(self) -> int:
        return int(math.prod(self.in_shape))

    @n.setter
    def n(self, value: int) -> None:  # an operator written against the flat interface sets m and n
        self.in_shape = (check_int(value, "n", 1),)

    @property
    def m(self) -> int:
        return int(math.prod(self.out_shape))

    @m.setter
    def m(self, value: int) -> None:
        self.out_shape = (check_int(value, "m", 1),)

    # ---------------------------------------------------------------------------------- subclasses

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for x (B, n) float32 C-contiguous, returning (B, m) float32. Subclasses implement this (or,
        written against the flat interface, :meth:`forward` itself)."""
        if type(self).forward is Operator.forward:
            raise NotImplementedError(f"{type(self).__name__} implements neither _forward nor forward")
        return self.forward(x)

    def _adjoint(self, y: np.ndarray) -> np.ndarray:
        """``A^T y`` for y (B, m) float32 C-contiguous, returning (B, n) float32 (or override :meth:`adjoint`)."""
        if type(self).adjoint is Operator.adjoint:
            raise NotImplementedError(f"{type(self).__name__} implements neither _adjoint nor adjoint")
        return self.adjoint(y)

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able dict (``type`` and every parameter) from which :meth:`from_description` rebuilds this
        operator exactly."""

    @classmethod
    def from_description(cls, d: dict[str, Any], **options) -> "Operator":
        """Rebuild from :meth:`describe` output; raises GSError naming a missing or invalid field."""
        raise GSError(f"operator type {cls.type!r} cannot be rebuilt from a description")

    @classmethod
    def build(cls, image_shape: tuple[int, int, int], seed: int, *, m: int | None = None, one_shot: bool = False,
              **params) -> "Operator":
        """The operator for images of ``image_shape`` from command-line parameters (:attr:`params`), a seed and
        (for :attr:`counts_measurements` operators) a number of measurements; ``one_shot`` as in :func:`make`."""
        raise GSError(f"operator type {cls.type!r} is not built from parameters")

    @property
    def nbytes(self) -> int:
        """Bytes of memory the operator holds or will allocate once used (estimated before allocating)."""
        return 0

    def onnx_form(self):
        """The operator as ONNX nodes for the composed objective graph (:class:`gs_onnx.physics.onnxform.OnnxForm`)
        acting on flat rows (B, n) -> (B, m), or None (the engine then applies it on the host)."""
        return None

    def cpu_place(self) -> str:
        """Where the composed engine applies the operator on a CPU when asked for ``auto``: ``graph`` (its ONNX
        form inside the objective graph) or ``host`` (numpy between two sessions). Operators whose numpy form
        is measurably faster than their ONNX form say ``host``."""
        return "graph" if self.onnx_form() is not None else "host"

    def preview(self, y: np.ndarray) -> np.ndarray | None:
        """The measurement as an image a person can look at, (B, C, H, W) float32 (not clipped), or None where
        it is not one (Gaussian and DCT measurements). Image-domain operators return it (the masked,
        low-resolution, blurred or noisy image, the zero-filled inverse of Fourier samples)."""
        return None

    # ------------------------------------------------------------------------------------- applying

    def _rows(self, a: Any, shape: tuple[int, ...], what: str) -> tuple[np.ndarray, bool]:
        a = np.asarray(a, dtype=np.float32)
        size = int(np.prod(shape))
        if a.ndim == 2 and a.shape[1] == size:
            return np.ascontiguousarray(a), False
        if a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == tuple(shape):
            return np.ascontiguousarray(a.reshape(a.shape[0], size)), True
        raise GSError(f"{what} of {self.type or type(self).__name__} must have shape (B, {size}) or "
                      f"(B, {', '.join(map(str, shape))}), got {tuple(a.shape)}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for a batch: x (B, n) -> (B, m), or x (B, *in_shape) -> (B, *out_shape); float32."""
        rows, shaped = self._rows(x, self.in_shape, "input")
        y = np.asarray(self._forward(rows), dtype=np.float32)
        return y.reshape(y.shape[0], *self.out_shape) if shaped else y

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """``A^T y`` for a batch: y (B, m) -> (B, n), or y (B, *out_shape) -> (B, *in_shape); float32."""
        rows, shaped = self._rows(y, self.out_shape, "adjoint input")
        x = np.asarray(self._adjoint(rows), dtype=np.float32)
        return x.reshape(x.shape[0], *self.in_shape) if shaped else x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    @property
    def H(self) -> "Operator":
        """The adjoint ``A^T`` as an operator (``A.H(y) == A.adjoint(y)``; ``A.H.H`` is ``A``)."""
        return Adjoint(self)

    def __matmul__(self, other: "Operator") -> "Operator":
        """``A @ B``: the operator that applies B, then A."""
        if not isinstance(other, Operator):
            return NotImplemented
        return Compose(self, other)

    def matrix(self) -> np.ndarray:
        """``A`` as a dense (m, n) float32 matrix, built column by column from the adjoint (tests, small
        operators; refused above :data:`MAX_DENSE_ENTRIES` entries)."""
        if self.m * self.n > MAX_DENSE_ENTRIES:
            raise GSError(f"{self.type} operator {self.m}x{self.n} is too large to build as a dense matrix")
        out = np.empty((self.m, self.n), np.float32)
        for s in range(0, self.m, 1024):
            e = min(s + 1024, self.m)
            eye = np.zeros((e - s, self.m), np.float32)
            eye[np.arange(e - s), np.arange(s, e)] = 1
            out[s:e] = self._adjoint(eye)
        return out

    # ----------------------------------------------------------------------------------- identity

    #: Rows of ``A`` the fingerprint covers (all of them for cheap operators).
    FINGERPRINT_ROWS = 256

    def _probe_rows(self, k: int) -> np.ndarray:
        """(A p)[:k] for the fingerprint's probe p; operators whose rows are costly override it."""
        return self._forward(_probe(self.n))[0, :k]

    def fingerprint(self) -> list[float]:
        """Eight numbers that tell this operator from any other with a different description: sums over eight
        row groups of ``(A p)[:k]`` for a fixed pseudo-random probe ``p`` (k = min(m, 256)). ``gs-measure``
        records them; :func:`gs_onnx.physics.sidecar.operator_for` checks that the operator rebuilt from the
        sidecar reproduces them."""
        k = min(self.m, self.FINGERPRINT_ROWS)
        v = np.asarray(self._probe_rows(k), dtype=np.float64)
        return [float(np.sum(part)) for part in np.array_split(v, 8)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_shape} -> {self.out_shape})"


# ------------------------------------------------------------------------------- adjoint, composition

class Adjoint(Operator):
    """``A^T`` of an operator ``A`` as an operator (``A.H``)."""

    type = "adjoint"

    def __init__(self, op: Operator):
        self.op = op
        self._set_shapes(op.out_shape, op.in_shape)

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    @property
    def H(self) -> Operator:
        return self.op

    @property
    def nbytes(self) -> int:
        return self.op.nbytes

    def describe(self) -> dict[str, Any]:
        return {"type": "adjoint", "of": self.op.describe()}

    @classmethod
    def from_description(cls, d, **options):
        return cls(from_description(_field(d, "of", dict), **options))

    def onnx_form(self):
        form = self.op.onnx_form()
        if form is None:
            return None
        from .onnxform import OnnxForm

        return OnnxForm(form.inputs, form.adjoint, form.forward)

    def cpu_place(self) -> str:
        return self.op.cpu_place()


class Compose(Operator):
    """``A @ B @ ...``: the product of operators, applied right to left (``Compose(A, B)(x) = A(B(x))``).

    Parameters
    ----------
    *ops : Operator
        At least two; each one's ``in_shape`` must equal the next one's ``out_shape``.
    """

    type = "compose"

    def __init__(self, *ops: Operator):
        flat: list[Operator] = []
        for op in ops:
            if not isinstance(op, Operator):
                raise GSError(f"compose: {op!r} is not an Operator")
            flat += list(op.ops) if isinstance(op, Compose) else [op]
        if len(flat) < 2:
            raise GSError("compose needs at least two operators")
        for a, b in zip(flat, flat[1:]):
            if a.in_shape != b.out_shape:
                raise GSError(f"compose: {a.type} takes {a.in_shape} but {b.type} gives {b.out_shape}")
        self.ops = tuple(flat)
        self._set_shapes(flat[-1].in_shape, flat[0].out_shape)

    def _forward(self, x):
        for op in reversed(self.ops):
            x = np.ascontiguousarray(op._forward(x), dtype=np.float32)
        return x

    def _adjoint(self, y):
        for op in self.ops:
            y = np.ascontiguousarray(op._adjoint(y), dtype=np.float32)
        return y

    @property
    def nbytes(self) -> int:
        return sum(op.nbytes for op in self.ops)

    @property
    def noise_default(self):  # the outermost operator makes the measurements
        return self.ops[0].noise_default

    def describe(self) -> dict[str, Any]:
        return {"type": "compose", "operators": [op.describe() for op in self.ops]}

    @classmethod
    def from_description(cls, d, **options):
        ops = _field(d, "operators", list)
        return cls(*[from_description(o, **options) for o in ops])

    def onnx_form(self):
        forms = [op.onnx_form() for op in self.ops]
        if any(f is None for f in forms):
            return None
        from .onnxform import OnnxForm

        inputs: dict = {}
        for f in forms:
            inputs.update(f.inputs)

        def fwd(b, x):
            for f in reversed(forms):
                x = f.forward(b, x)
            return x

        def adj(b, r):
            for f in forms:
                r = f.adjoint(b, r)
            return r

        return OnnxForm(inputs, fwd, adj)

    def cpu_place(self) -> str:
        return "host" if any(op.cpu_place() == "host" for op in self.ops) else "graph"

    def preview(self, y):
        return self.ops[0].preview(y)


class FunctionOperator(Operator):
    """An operator from two functions, for your own physics without a subclass (like scipy's
    ``LinearOperator``).

    Parameters
    ----------
    forward, adjoint : callables
        ``forward(x)`` maps flat rows (B, n) float32 to (B, m); ``adjoint(y)`` maps (B, m) to (B, n). They must
        be each other's adjoint (:func:`gs_onnx.physics.check_operator` tests it).
    in_shape, out_shape : shapes
        ``in_shape`` is the image shape (C, H, W) of the model.
    name : str
        A label recorded by ``describe()`` (such an operator cannot be rebuilt from a sidecar).
    noise_default : "paper" or float
    """

    type = "function"

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], adjoint: Callable[[np.ndarray], np.ndarray],
                 in_shape, out_shape, name: str = "custom", noise_default: str | float = 0.01):
        if not (callable(forward) and callable(adjoint)):
            raise GSError("FunctionOperator needs callable forward and adjoint")
        self._f, self._a, self.name = forward, adjoint, str(name)
        self.noise_default = noise_default
        self._set_shapes(in_shape, out_shape)

    def _forward(self, x):
        return self._checked(self._f(x), self.m, "forward")

    def _adjoint(self, y):
        return self._checked(self._a(y), self.n, "adjoint")

    def _checked(self, a, cols: int, what: str) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != cols:
            raise GSError(f"operator {self.name!r}: {what} returned shape {a.shape}, expected (B, {cols})")
        return a

    def describe(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape)}


def as_operator(op: Any, image_shape=None) -> Operator:
    """``op`` as an :class:`Operator`: an Operator is returned as it is; any other object with integer ``m`` and
    ``n`` and methods ``forward`` ((B, n) -> (B, m)) and ``adjoint`` ((B, m) -> (B, n)) is wrapped in a
    :class:`FunctionOperator` (its ``describe()`` is kept when it has one). This is the protocol every solver
    accepts (docs/physics.md)."""
    if isinstance(op, Operator):
        return op
    missing = [a for a in ("m", "n", "forward", "adjoint") if not hasattr(op, a)]
    if missing:
        raise GSError(f"{type(op).__name__} is not an operator: it lacks {', '.join(missing)} "
                      "(the protocol: m, n, forward(x (B, n)) -> (B, m), adjoint(y (B, m)) -> (B, n))")
    m, n = check_int(op.m, "operator m", 1), check_int(op.n, "operator n", 1)
    own = getattr(op, "in_shape", None)
    if own:
        shape = tuple(int(d) for d in own)
        if int(np.prod(shape)) != n:
            raise GSError(f"{type(op).__name__}: in_shape {shape} holds {int(np.prod(shape))} values but n = {n}")
    else:
        # The caller's image shape where it fits; where it does not, the caller's own size check names it.
        shape = tuple(image_shape) if image_shape and int(np.prod(image_shape)) == n else (n,)
    wrapped = FunctionOperator(op.forward, op.adjoint, shape, tuple(getattr(op, "out_shape", None) or (m,)),
                               name=type(op).__name__, noise_default=getattr(op, "noise_default", 0.01))
    if callable(getattr(op, "describe", None)):
        wrapped.describe = op.describe  # type: ignore[method-assign]
    return wrapped


# ------------------------------------------------------------------------------------------ registry

_REGISTRY: dict[str, type[Operator]] = {}
_ENTRY_POINTS_LOADED = False


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: make an operator type known to :func:`from_description`, ``gs-measure --operator``,
    the experiments and the contract test, by its :attr:`Operator.type`. Other packages register theirs
    through the ``gs_onnx.operators`` entry point group (a module that registers on import)."""
    if not cls.type or not isinstance(cls.type, str):
        raise GSError(f"{cls.__name__} has no type name")
    if cls.type in _REGISTRY and _REGISTRY[cls.type] is not cls:
        raise GSError(f"operator type {cls.type!r} is already registered by {_REGISTRY[cls.type].__name__}")
    _REGISTRY[cls.type] = cls
    return cls


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="gs_onnx.operators"):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not break the built-in operators
            import logging

            logging.getLogger("gs_onnx").warning("operator plug-in %s failed to load: %s", ep.name, e)


def registry() -> dict[str, type[Operator]]:
    """{type name: class} of every registered operator (built-in ones first)."""
    _load_entry_points()
    return dict(_REGISTRY)


def operator_class(kind: str) -> type[Operator]:
    reg = registry()
    if kind not in reg:
        raise GSError(f"unknown operator {kind!r}: choose one of {', '.join(measuring_types())}")
    return reg[kind]


def measuring_types() -> tuple[str, ...]:
    """Operator types ``gs-measure`` can build from parameters (every registered one that implements
    :meth:`Operator.build`)."""
    return tuple(k for k, c in registry().items() if c.build.__func__ is not Operator.build.__func__)


def make(kind: str, image_shape, seed: int = 0, *, m: int | None = None, one_shot: bool = False,
         **params) -> Operator:
    """An operator by type name for images of ``image_shape``: ``make("mask", (3, 64, 64), seed=0, keep=0.2)``.

    ``one_shot``: the operator is applied once or twice (measuring), not hundreds of times (recovering): a
    dense Gaussian then streams its rows instead of holding the matrix. Unknown parameters and parameters of
    another operator are refused by name."""
    cls = operator_class(kind)
    allowed = {p.name for p in cls.params}
    for k in params:
        if k not in allowed:
            raise GSError(f"operator {kind} takes no parameter {k!r}" +
                          (f" (its parameters: {', '.join(sorted(allowed))})" if allowed else ""))
    if m is not None and not cls.counts_measurements:
        raise GSError(f"operator {kind} has no free number of measurements (--m/--ratio are for "
                      f"{', '.join(k for k, c in registry().items() if c.counts_measurements)})")
    if cls.counts_measurements and m is None:
        raise GSError(f"operator {kind} needs a number of measurements (--m or --ratio)")
    image_shape = check_shape(image_shape, "image shape")
    seed = check_int(seed, "seed", 0)
    full = {p.name: p.default for p in cls.params}
    full.update(params)
    return cls.build(image_shape, seed, **({"m": m} if cls.counts_measurements else {}), one_shot=one_shot, **full)


register(Adjoint)
register(Compose)


def _field(d: dict, key: str, typ, default: Any = dataclasses.MISSING):
    if key not in d:
        if default is not dataclasses.MISSING:
            return default
        raise GSError(f"operator description ({d.get('type')}) lacks {key!r}")
    v = d[key]
    if typ is int:
        return check_int(v, f"operator description: {key}", 0)
    if typ is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GSError(f"operator description: {key} must be a finite number, got {v!r}")
        return float(v)
    if not isinstance(v, typ) or (typ is not bool and isinstance(v, bool)):
        raise GSError(f"operator description: {key} must be a {typ.__name__}, got {v!r}")
    return v


def from_description(d: dict[str, Any], **options) -> Operator:
    """Rebuild an operator from :meth:`Operator.describe` output (a measurement sidecar's ``operator``).

    ``options`` go to the type's :meth:`Operator.from_description` (``max_bytes`` for a dense Gaussian).

    Raises
    ------
    GSError
        Unknown type, missing or invalid fields, or a format detail this version cannot reproduce.
    """
    if not isinstance(d, dict):
        raise GSError(f"operator description must be a JSON object, got {type(d).__name__}")
    if d.get("dtype", "float32") != "float32":
        raise GSError(f"unsupported operator dtype {d.get('dtype')!r} (only float32)")
    kind = d.get("type")
    reg = registry()
    if not isinstance(kind, str) or kind not in reg:
        raise GSError(f"unknown operator type {kind!r} (known: {', '.join(reg)})")
    return reg[kind].from_description(d, **options)


def in_shape_of(d: dict[str, Any]) -> tuple[int, ...]:
    """The input shape a description records: ``in_shape`` (this version), else ``(n,)`` (sidecars written
    before operators knew image shapes)."""
    if "in_shape" in d:
        return check_shape(d["in_shape"], "operator description: in_shape")
    return (_field(d, "n", int),)
