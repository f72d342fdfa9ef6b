"""Every docstring example of the runtime runs and gives what it shows (doctest over each gs_onnx module)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gs_onnx

MODULES = ["gs_onnx"] + sorted(m.name for m in pkgutil.walk_packages(gs_onnx.__path__, "gs_onnx."))


def _with_examples():
    out = []
    finder = doctest.DocTestFinder()
    for name in MODULES:
        mod = importlib.import_module(name)
        tests = [t for t in finder.find(mod, name) if t.examples]
        if tests:
            out.append(name)
    return out


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    res = doctest.testmod(mod, optionflags=flags, report=True, verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} docstring examples of {name} failed"
    assert res.attempted > 0


def test_no_docstring_example_is_skipped():
    finder = doctest.DocTestFinder()
    skipped = []
    for name in MODULES:
        for t in finder.find(importlib.import_module(name), name):
            skipped += [f"{t.name}: {e.source.strip()}" for e in t.examples
                        if e.options.get(doctest.SKIP)]
    assert not skipped, skipped
