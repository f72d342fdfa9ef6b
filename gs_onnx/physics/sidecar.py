"""The operator a measurement file's sidecar describes, rebuilt and checked against the fingerprint recorded
when the measurements were made (:mod:`gs_onnx.io.measurement` reads and checks the files themselves).
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
