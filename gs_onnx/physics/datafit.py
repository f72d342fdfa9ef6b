"""The data-fidelity term of the measurement model y = A x + noise: ``f = sum_j w_j r_j^2 / sum_j w_j`` with
r = A x - y, its held-out twin and its gradient. Every objective (the per-block reference, the composed engine's
host path, mGANprior, Lasso-DCT's gradient step) computes its data term here, so that the solvers and the
engine share it without importing each other.
"""
from __future__ import annotations

import numpy as np

from .base import Operator

def data_term(r: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The L2 data term shared by every objective, from the residual r = A x - y (B, m) float32.

    Returns f (B,) float64 ``= sum_j w_j r_j^2 / sum_j w_j``, the held-out loss (B,) float64
    ``= sum_j (1 - w_j) r_j^2 / max(sum_j (1 - w_j), 1)`` and dL/d(Ax) (B, m) float32 ``= 2 w r / sum_j w_j``.
    ``w`` (B, m) or None (every row fitted: f = ||r||^2 / m, the paper's objective; no held-out rows).
    The composed graph (:mod:`gs_onnx.engine.graph`) computes the same formulas.
    """
    r64 = r.astype(np.float64)
    r2 = r64 * r64
    m = r.shape[1]
    if w is None:
        return r2.sum(axis=1) / m, np.zeros(r.shape[0]), (2.0 / m) * r
    wd = np.broadcast_to(np.asarray(w, dtype=np.float64), r.shape)
    sw = np.maximum(wd.sum(axis=1), 1.0)
    hold = 1.0 - wd
    f_held = (r2 * hold).sum(axis=1) / np.maximum(hold.sum(axis=1), 1.0)
    return (r2 * wd).sum(axis=1) / sw, f_held, (2.0 * wd / sw[:, None] * r64).astype(np.float32)


#: Batches of at most this many rows take the one-pass data term on a dense matrix held in memory; larger
#: batches are faster as two matrix products (measured on 2 cores: docs/benchmarks.md). A streamed matrix
#: (generated row block by row block) always takes one pass: it is generated once per evaluation, not twice.
FUSED_MAX_ROWS = 1


def data_fit(op: Operator, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data term of images ``x`` (B, n) float32 against measurements ``y`` ((B, m) or (1, m)) and its
    gradient in image space: f (B,), the held-out loss (B,) (both float64, as :func:`data_term`) and
    dL/dx (B, n) float32 ``= A^T (dL/d(Ax))``.

    An operator that offers ``row_blocks()`` (the dense Gaussian) is read once: each block of rows gives its
    part of ``A x - y`` and, while still in the cache, its part of ``A^T (2 w r / sum w)``. Others apply
    ``forward`` and ``adjoint``; both ways agree up to float32 rounding (tested).

    Examples
    --------
    >>> import numpy as np
    >>> from gs_onnx.physics import GaussianOperator
    >>> A = GaussianOperator(50, 300, seed=0)
    >>> x = np.ones((1, 300), np.float32); y = A.forward(x) + 0.5
    >>> f, held, g = data_fit(A, x, y)
    >>> round(float(f[0]), 6), g.shape            # every residual is -0.5: f = 0.25
    (0.25, (1, 300))
    """
    B = x.shape[0]
    blocks = getattr(op, "row_blocks", None)
    if blocks is None or (B > FUSED_MAX_ROWS and not getattr(op, "stream", False)):
        f, f_held, dr = data_term(op.forward(x) - y, w)
        return f, f_held, np.asarray(op.adjoint(np.ascontiguousarray(dr, dtype=np.float32)), dtype=np.float32)
    m = op.m
    if w is None:
        scale = np.full((1, m), 2.0 / m, dtype=np.float32)
    else:
        wd = np.broadcast_to(np.asarray(w, dtype=np.float64), (B, m))
        scale = (2.0 * wd / np.maximum(wd.sum(axis=1), 1.0)[:, None]).astype(np.float32)
    r = np.empty((B, m), dtype=np.float32)
    gx = np.zeros((B, op.n), dtype=np.float32)
    xt = np.ascontiguousarray(x.T, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    for start, stop, a in blocks():
        rb = r[:, start:stop]
        np.subtract((a @ xt).T, y[:, start:stop], out=rb)
        gx += (scale[:, start:stop] * rb) @ a
    f, f_held, _ = data_term(r, w)
    return f, f_held, gx


def measurement_error(op: Operator, x: np.ndarray, y: np.ndarray) -> float:
    """||A x - y||_2 for one image x (any shape with n values): what every method reports, and what picks the
    winner among restarts.

    Examples
    --------
    >>> import numpy as np
    >>> from gs_onnx.physics import IdentityOperator
    >>> measurement_error(IdentityOperator(4), np.ones(4, np.float32), np.zeros(4, np.float32))
    2.0
    """
    return float(np.linalg.norm((op.forward(np.asarray(x).reshape(1, -1)) - np.asarray(y).reshape(1, -1))
                                .astype(np.float64)))
