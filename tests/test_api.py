"""The flat public API: everything in ``gs_onnx.__all__`` exists and is documented, and a program that is
not gs-onnx can rebuild A from a sidecar and reproduce the measurements."""
from __future__ import annotations

import numpy as np
import pytest

import gs_onnx
from gs_onnx import cli

from test_cli import IMG_A, IMG_B, measure_pair


def test_all_names_exist_and_have_docstrings():
    for name in gs_onnx.__all__:
        obj = getattr(gs_onnx, name)
        assert (obj.__doc__ or "").strip(), name


def test_operator_rebuilt_from_sidecar_reproduces_measurements(tmp_path):
    """y - A x is the recorded noise: its std is the sidecar's sigma (m = 2000 draws)."""
    meas = measure_pair(tmp_path)
    y, sidecar = gs_onnx.read_measurements(meas)
    A = gs_onnx.operator_for(sidecar)
    assert (A.m, A.n) == (2000, 12288)
    from gs_onnx.io.images import load_image

    x = np.stack([load_image(p, 64).reshape(-1) for p in (IMG_A, IMG_B)])
    noise = y - A.forward(x)
    assert noise.std() == pytest.approx(sidecar["sigma"], rel=0.05)
    # and exactly: the noise stream of the sidecar's seed
    again = gs_onnx.measure(x, A, sidecar["sigma"], sidecar["seed"])
    np.testing.assert_array_equal(again, y)
    assert cli  # the CLI module imports through the package too
