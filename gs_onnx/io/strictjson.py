"""JSON as the project's files are read: an object with the same key twice, and the non-standard constants
``NaN``/``Infinity`` that Python's ``json`` accepts, are refused (a second ``output_range`` silently winning over
the first is a different file than the one a reader checked by eye)."""
from __future__ import annotations

import json
import math
from typing import Any


class BadJSON(ValueError):
    """Valid to Python's ``json`` module but refused here: a duplicated key or a NaN/Infinity constant."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise BadJSON(f"the key {k!r} appears twice in one object")
        out[k] = v
    return out


def _non_finite(v: Any, where: str = "") -> str | None:
    """The path (``output_range[1]``) of the first NaN or infinity in a parsed value, or None."""
    if isinstance(v, float) and not math.isfinite(v):
        return where or "the value"
    if isinstance(v, dict):
        for k, x in v.items():
            hit = _non_finite(x, f"{where}.{k}" if where else str(k))
            if hit:
                return hit
    elif isinstance(v, list):
        for i, x in enumerate(v):
            hit = _non_finite(x, f"{where}[{i}]")
            if hit:
                return hit
    return None


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises :class:`BadJSON` on a duplicated key or a NaN/Infinity constant (and
    ``json.JSONDecodeError`` on text that is not JSON, as ever).

    Examples
    --------
    >>> loads('{"a": 1, "b": [2, 3]}')
    {'a': 1, 'b': [2, 3]}
    >>> loads('{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    gs_onnx.io.strictjson.BadJSON: the key 'a' appears twice in one object
    >>> loads('{"range": [-1.0, Infinity]}')
    Traceback (most recent call last):
    ...
    gs_onnx.io.strictjson.BadJSON: range[1] is NaN or Infinity, not a JSON number
    """
    v = json.loads(text, object_pairs_hook=_pairs)
    where = _non_finite(v)
    if where:
        raise BadJSON(f"{where} is NaN or Infinity, not a JSON number")
    return v
