"""JSON as the project's files are read: an object with the same key twice, and the non-standard constants
``NaN``/``Infinity`` that Python's ``json`` accepts, are refused (a second ``output_range`` silently winning over
the first is a different file than the one a reader checked by eye)."""
from __future__ import annotations

import json
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


def _constant(name: str):
    raise BadJSON(f"{name} is not a JSON number")


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
    """
    return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
