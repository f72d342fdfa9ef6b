"""Checks every operator must pass, for the contract test and for your own operators."""
from __future__ import annotations

import json

import numpy as np

from ..errors import GSError
from .base import Operator, from_description


def check_operator(op: Operator, batch: int = 3, seed: int = 0, rebuild: bool = True,
                   onnx: bool = False) -> dict[str, float]:
    """Check that ``op`` is a well-formed linear operator; raises GSError naming the first failure.

    Checks, on random inputs: the shapes of :meth:`~Operator.forward` and :meth:`~Operator.adjoint` (flat
    and image-shaped), float32 results, linearity, the adjoint identity ``<A x, y> = <x, A^T y>`` (relative
    error below 1e-5 in float64 accumulation), that a batch equals its rows one by one, and (``rebuild``) that
    ``from_description(describe())`` survives JSON and gives the same ``A x``. With ``onnx``, the operator's
    ONNX form (if it has one) run by ONNX Runtime on the CPU must equal the numpy form to 1e-5 (relative
    to the largest value), forward and adjoint.

    Returns
    -------
    dict with ``adjoint_rel_err``, ``linearity_rel_err`` and (with ``onnx``) ``onnx_forward_err`` and
    ``onnx_adjoint_err``.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, op.n)).astype(np.float32)
    y = rng.standard_normal((batch, op.m)).astype(np.float32)
    ax, aty = op.forward(x), op.adjoint(y)
    if ax.shape != (batch, op.m) or aty.shape != (batch, op.n):
        raise GSError(f"{op.type}: forward gave {ax.shape}, adjoint {aty.shape}; expected {(batch, op.m)}, "
                      f"{(batch, op.n)}")
    if ax.dtype != np.float32 or aty.dtype != np.float32:
        raise GSError(f"{op.type}: results must be float32, got {ax.dtype} and {aty.dtype}")
    shaped = op.forward(x.reshape(batch, *op.in_shape))
    if shaped.shape != (batch, *op.out_shape) or not np.array_equal(shaped.reshape(batch, -1), ax):
        raise GSError(f"{op.type}: image-shaped input does not give the flat result reshaped")
    lhs = np.sum(ax.astype(np.float64) * y, axis=1)
    rhs = np.sum(x.astype(np.float64) * aty, axis=1)
    scale = np.linalg.norm(ax.astype(np.float64), axis=1) * np.linalg.norm(y, axis=1) + 1e-30
    adj = float(np.max(np.abs(lhs - rhs) / scale))
    if adj > 1e-5:
        raise GSError(f"{op.type}: <A x, y> != <x, A^T y> (relative error {adj:.2e}): the adjoint is wrong")
    a, b = 0.7, -1.3
    comb = op.forward(a * x[:1] + b * x[1:2]).astype(np.float64)
    lin = float(np.linalg.norm(comb - (a * ax[:1] + b * ax[1:2])) / (np.linalg.norm(comb) + 1e-30))
    if lin > 1e-5:
        raise GSError(f"{op.type}: not linear (relative error {lin:.2e})")
    one = np.concatenate([op.forward(x[i:i + 1]) for i in range(batch)])
    if not np.allclose(one, ax, rtol=1e-5, atol=1e-6 * (1 + np.abs(ax).max())):
        raise GSError(f"{op.type}: a batch differs from its rows applied one by one")
    if rebuild:
        again = from_description(json.loads(json.dumps(op.describe())))
        if type(again) is not type(op) or not np.array_equal(again.forward(x), ax):
            raise GSError(f"{op.type}: from_description(describe()) does not rebuild the same operator")
    out = {"adjoint_rel_err": adj, "linearity_rel_err": lin}
    if onnx and op.onnx_form() is not None:
        for name, got, want in (("forward", onnx_apply(op, x), ax), ("adjoint", onnx_apply(op, y, adjoint=True), aty)):
            err = float(np.max(np.abs(got.astype(np.float64) - want)) / (np.max(np.abs(want)) + 1e-30))
            if got.shape != want.shape or err > 1e-5:
                raise GSError(f"{op.type}: the ONNX form's {name} differs from numpy (relative error {err:.2e})")
            out[f"onnx_{name}_err"] = err
    return out


def onnx_apply(op: Operator, a: np.ndarray, adjoint: bool = False) -> np.ndarray:
    """``A a`` (or ``A^T a``) computed by the operator's ONNX form in ONNX Runtime on the CPU."""
    import onnxruntime as ort

    from .onnxform import operator_model

    form = op.onnx_form()
    if form is None:
        raise GSError(f"{op.type} has no ONNX form")
    model = operator_model(form, op.n, op.m, adjoint)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"r" if adjoint else "x": np.ascontiguousarray(a, np.float32)}
    feed.update({k: make() for k, (_, make) in form.inputs.items()})
    return sess.run(None, feed)[0]
