"""The operator a measurement file's sidecar describes, rebuilt and checked against the fingerprint recorded
when the measurements were made (:mod:`gs_onnx.io.measurement` reads and checks the files themselves); the
operator a recovery folder's interface describes, rebuilt and checked against the tables the folder feeds its graph.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GSError
from .base import Operator, from_description as operator_from_description


def sidecar_fields(op: Operator) -> dict[str, Any]:
    """What a measurement sidecar says about its operator: its description, ``m``, ``n`` and the fingerprint
    (``A`` applied to a fixed probe) that :func:`operator_for` checks the rebuilt operator against. A sidecar
    without the fingerprint is refused unless trusted (``--trust-sidecar``).

    Examples
    --------
    >>> from gs_onnx.physics import GaussianOperator
    >>> f = sidecar_fields(GaussianOperator(m=100, n=12288, seed=0))
    >>> sorted(f), len(f["operator_fingerprint"])
    (['m', 'n', 'operator', 'operator_fingerprint'], 8)
    """
    return {"operator": op.describe(), "operator_fingerprint": op.fingerprint(), "m": op.m, "n": op.n}


def operator_for(sidecar: dict[str, Any], *, max_bytes: int | None = None) -> Operator:
    """Rebuild the operator ``A`` from a sidecar's ``"operator"`` description.

    Raises
    ------
    GSError
        No or invalid description, or an operator whose ``m``/``n`` disagree with the sidecar's.
    """
    d = sidecar.get("operator")
    if not isinstance(d, dict):
        raise GSError("sidecar has no operator description")
    op = operator_from_description(d, max_bytes=max_bytes)
    for key in ("m", "n"):
        if key in sidecar and sidecar[key] != getattr(op, key):
            raise GSError(f"sidecar {key}={sidecar[key]!r} does not match its operator ({key}={getattr(op, key)})")
    shape = sidecar.get("image_shape")
    if len(op.in_shape) == 3 and shape is not None and list(op.in_shape) != list(shape):
        raise GSError(f"the sidecar's operator takes images of shape {list(op.in_shape)} but its image_shape is "
                      f"{shape}")
    want = sidecar.get("operator_fingerprint")
    if want is not None:
        if not (isinstance(want, list) and want and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and math.isfinite(v) for v in want)):
            raise GSError("the sidecar's operator_fingerprint must be a list of finite numbers")
        got = op.fingerprint()
        if (not isinstance(want, list) or len(want) != len(got)
                or not np.allclose(got, want, rtol=2e-6, atol=2e-6 * (1 + max(abs(v) for v in got)))):
            raise GSError("the operator the sidecar describes does not reproduce the one that made the "
                          "measurements (operator_fingerprint differs): was its type, seed or m edited?")
    return op


def operator_for_tables(description: Any, tables: dict[str, np.ndarray]) -> Operator:
    """Rebuild the operator a recovery folder's ``recovery.json`` describes and check it against the operator data
    the folder feeds its graph (``tables``: the folder's inputs by name): the ``op_*`` parameters its ONNX form
    lifts, exactly those names with exactly those values, and a dense operator's first rows (``A``, rows up to
    :attr:`Operator.FINGERPRINT_ROWS`, drawn without the whole matrix). An interface whose operator was edited
    (type, seed, sizes) no longer describes the data its graph runs on.

    Raises
    ------
    GSError
        An operator that cannot be rebuilt (an unknown type, invalid parameters) or that disagrees with ``tables``.

    Examples
    --------
    >>> from gs_onnx.physics.image import Mask
    >>> op = Mask((3, 8, 8), keep=0.5, seed=1)
    >>> good = lifted_tables(op)
    >>> operator_for_tables(op.describe(), good).m == op.m
    True
    >>> operator_for_tables({**op.describe(), "seed": 2}, good)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gs_onnx.errors.GSError: op_mask_kept is not the mask operator's table that recovery.json describes (its seed, ...
    """
    if not isinstance(description, dict):
        raise GSError("the operator description is not an object")
    op = operator_from_description(description)
    kind = description.get("type")
    want = lifted_tables(op)
    have = {k: v for k, v in tables.items() if k.startswith("op_")}
    if set(want) != set(have):
        names = lambda d: ", ".join(sorted(d)) or "none"  # noqa: E731
        raise GSError(f"the folder's operator tables ({names(have)}) are not those of the {kind} operator that "
                      f"recovery.json describes ({names(want)})")
    for k in sorted(want):
        a, b = have[k], want[k]
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
            raise GSError(f"{k} is not the {kind} operator's table that recovery.json describes (its seed, sizes or "
                          "parameters differ)")
    for name, (shape, _) in (op.onnx_form().inputs or {}).items():
        a = tables.get(name)
        if a is None or tuple(a.shape) != tuple(shape):
            raise GSError(f"the {kind} operator that recovery.json describes needs {name} of shape {list(shape)}")
        rows = getattr(op, "rows", None)
        if rows is not None:
            k = min(op.m, Operator.FINGERPRINT_ROWS)
            if not np.array_equal(a[:k], rows(0, k)):
                raise GSError(f"the first {k} rows of {name} are not those of the {kind} operator that "
                              "recovery.json describes (its seed or sizes differ)")
    return op


def lifted_tables(op: Operator) -> dict[str, np.ndarray]:
    """The parameters (``op_*``) an operator's ONNX form feeds a recovery graph as inputs, by name: what a
    lifting :class:`~gs_onnx.physics.onnxform.Builder` collects from its forward and adjoint nodes."""
    from .onnxform import Builder

    form = op.onnx_form()
    if form is None:
        raise GSError(f"{type(op).__name__} has no ONNX form: no recovery graph runs it")
    b = Builder(lift=True)
    form.forward(b, "x")
    form.adjoint(b, "r")
    return dict(b.lifted)
