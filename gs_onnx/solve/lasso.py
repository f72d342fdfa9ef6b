"""Lasso-DCT, the paper's sparsity baseline: min_z ||y - A Phi z||^2 + lam ||z||_1, x = Phi z.

``Phi`` is the orthonormal 2-D inverse DCT applied per channel (scipy.fft, ``norm="ortho"``), so ``Phi`` is
orthogonal and the Lipschitz constant of the smooth part's gradient is ``2 ||A||_2^2`` (found by Lanczos
iteration once per operator and kept). Solved by FISTA (Beck & Teboulle 2009) with the fixed step 1/L,
adaptive restart (O'Donoghue & Candes 2015) and continuation on ``lam`` (Hale, Yin & Zhang 2008): the l1
weight starts at half of the smallest weight whose solution is zero and halves every
:data:`CONTINUATION_ITERS` iterations down to ``lam``, so that the early iterations build the support
instead of crawling towards it. Once at ``lam`` (and at least :data:`MIN_FINAL` iterations into it), it stops
when the relative change of z has stayed below ``tol`` for :data:`PATIENCE` iterations, or after ``max_iter``
iterations, and reports the KKT residual. Images solved together (:func:`lasso_dct_batch`) share every read
of the operator, each with its own state and stopping.

Every iteration reads the operator once: ``A x - y`` and ``A^T (A x - y)`` come from the one data term of
the solvers (:func:`gs_onnx.physics.datafit.data_fit`: a dense Gaussian is read block by block, each block giving
its part of both while in the cache; a structured operator is applied as an operator).
"""
from __future__ import annotations

import dataclasses
import weakref
from typing import Callable

import numpy as np
from scipy.fft import dctn, idctn

from ..physics import Operator
from ..physics.base import as_operator

#: Iterations per continuation stage (``lam`` halves after each until it reaches the weight asked for).
CONTINUATION_ITERS = 10
#: Iterations the relative change of z must stay below ``tol`` (at the final ``lam``) before stopping.
PATIENCE = 5
#: The default stopping tolerance on ||z_k - z_{k-1}|| / ||z_k||.
TOL = 1e-4
#: Iterations at the final ``lam`` before the stopping rule may end a run (right after a stage the change is
#: small because the step restarts, not because the solution is reached).
MIN_FINAL = 100
#: FISTA iterations at most (continuation stages included).
MAX_ITER = 2000

#: Lasso-DCT's weight per operator type, chosen like TV's (:data:`gs_onnx.solve.tv.LAM`) on the first 3 CelebA
#: train faces (64 px) at the physics preset's noise from a grid 1e-4 ... 1, the best mean PSNR
#: (``benchmarks/tv_weights.py 64 lasso``; docs/results.md). Compressed sensing keeps the paper's 0.01: the
#: grid's best is 0.1 at m/n 0.163 (+0.15 dB) and 1.0 at 0.0488 (+0.41 dB), small beside GS's lead there.
LAM = {"gaussian": 0.01, "srdct": 0.01, "mask": 0.03, "box": 0.003, "downsample": 0.003, "fourier": 0.01,
       "blur": 0.003, "identity": 0.3}
#: The weight of an operator type not in :data:`LAM` (the paper's).
DEFAULT_LAM = 0.01


def default_lam(kind: str | None) -> float:
    """Lasso-DCT's weight for an operator type: :data:`LAM`, else :data:`DEFAULT_LAM`."""
    return LAM.get(kind or "", DEFAULT_LAM)


def dct2(x: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT-II over the last two axes (per channel)."""
    return dctn(x, type=2, axes=(-2, -1), norm="ortho")


def idct2(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dct2` (its transpose): Phi."""
    return idctn(z, type=2, axes=(-2, -1), norm="ortho")


@dataclasses.dataclass
class LassoResult:
    """``image`` (C, H, W) float32 = Phi z (unclamped), ``coef`` z, iterations, KKT residual, objective."""

    image: np.ndarray
    coef: np.ndarray
    iterations: int
    kkt: float
    objective: float
    converged: bool


_NORMS: "weakref.WeakKeyDictionary[Operator, float]" = weakref.WeakKeyDictionary()


def spectral_norm_sq(op: Operator, n: int | None = None, tol: float = 1e-4, seed: int = 0) -> float:
    """||A||_2^2, the largest eigenvalue of A^T A, by Lanczos iteration (scipy's ``eigsh``) to relative
    accuracy ``tol``, raised by 1 % (which keeps FISTA's step safe); computed once per operator and kept.

    Examples
    --------
    >>> from gs_onnx.physics import make
    >>> round(spectral_norm_sq(make("mask", (3, 8, 8), 0, keep=0.5)), 4)       # a mask: ||A|| = 1
    1.01
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    cached = _NORMS.get(op) if _weakrefable(op) else None
    if cached is not None:
        return cached
    n = op.n if n is None else n
    small = min(op.m, n)
    if small <= 64:  # tiny operators: the dense Gram matrix
        a = np.asarray(op.forward(np.eye(n, dtype=np.float32)), np.float64)
        lam = float(np.linalg.eigvalsh(a.T @ a if n <= op.m else a @ a.T)[-1])
    else:
        if op.m < n:  # the m x m Gram A A^T has the same top eigenvalue, in fewer dimensions
            def mv(v):
                return op.forward(op.adjoint(np.asarray(v, np.float32).reshape(1, -1)))[0].astype(np.float64)
            dim = op.m
        else:
            def mv(v):
                return op.adjoint(op.forward(np.asarray(v, np.float32).reshape(1, -1)))[0].astype(np.float64)
            dim = n
        v0 = np.random.default_rng(seed).standard_normal(dim)
        lam = float(eigsh(LinearOperator((dim, dim), matvec=mv, dtype=np.float64), k=1, which="LA", tol=tol,
                          v0=v0, return_eigenvectors=False)[0])
    lam *= 1.01
    if _weakrefable(op):
        _NORMS[op] = lam
    return lam


def lipschitz(op: Operator) -> float:
    """``||A||^2`` for a step size: the operator's own bound where it has one (the dense Gaussian's, drawn from a
    concentration inequality, costs nothing where Lanczos reads a 1.6 GB matrix dozens of times), else
    :func:`spectral_norm_sq`."""
    bound = getattr(op, "norm_sq_bound", None)
    return float(bound()) if callable(bound) else spectral_norm_sq(op, op.n)


def _weakrefable(op) -> bool:
    try:
        weakref.ref(op)
        return True
    except TypeError:
        return False


def lasso_dct(op: Operator, y: np.ndarray, shape: tuple[int, int, int], lam: float = 0.01, *,
              max_iter: int = MAX_ITER, tol: float = TOL, lipschitz: float | None = None,
              callback: Callable[[int, float], None] | None = None) -> LassoResult:
    """Solve the Lasso in the DCT domain for one measurement vector ``y`` ((m,) float).

    Parameters
    ----------
    op : measurement operator with ``op.n == prod(shape)``
    shape : (C, H, W) of the image
    lam : the l1 weight (the paper: 0.01)
    max_iter : FISTA iterations at most (continuation stages included)
    tol : stop once ||z_k - z_{k-1}|| / ||z_k|| < tol for :data:`PATIENCE` iterations, at least
        :data:`MIN_FINAL` iterations into the final ``lam``
    lipschitz : ||A||_2^2 if known (default: :func:`spectral_norm_sq`, kept per operator)
    callback : ``callback(iteration, objective)`` after each iteration (a progress bar)

    Examples
    --------
    >>> import numpy as np
    >>> from gs_onnx.physics import make
    >>> A = make("mask", (1, 16, 16), 0, keep=0.5)
    >>> x = np.full((1, 16, 16), 0.5, np.float32)          # a flat image: one DCT coefficient
    >>> r = lasso_dct(A, A.forward(x.reshape(1, -1))[0], (1, 16, 16), lam=1e-4)
    >>> r.converged, bool(np.abs(r.image - x).max() < 0.01)
    (True, True)
    """
    cb = None if callback is None else (lambda it, f: callback(it, float(f[0])))
    return lasso_dct_batch(op, np.asarray(y).reshape(1, -1), shape, lam, max_iter=max_iter, tol=tol,
                           lipschitz=lipschitz, callback=cb)[0]


def lasso_dct_batch(op: Operator, Y: np.ndarray, shape: tuple[int, int, int], lam: float = 0.01, *,
                    max_iter: int = MAX_ITER, tol: float = TOL, lipschitz: float | None = None,
                    callback: Callable[[int, np.ndarray], None] | None = None) -> list[LassoResult]:
    """:func:`lasso_dct` for every row of ``Y`` ((B, m)) at once: each image keeps its own FISTA state,
    continuation and stopping, and the images still running share every read of ``A`` (a dense Gaussian is
    read once per iteration for all of them). The result of each row is that of solving it alone.
    ``callback(iteration, objectives (B,))``."""
    from ..physics.datafit import data_fit

    op = as_operator(op, shape)
    Y32 = np.asarray(Y, dtype=np.float32).reshape(-1, op.m)
    B, m = Y32.shape
    L = 2.0 * (lipschitz if lipschitz is not None else spectral_norm_sq(op, op.n))
    shp = tuple(shape)

    def grad(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(d/dz ||A Phi z - y||^2 (k, C, H, W), ||A Phi z - y||^2 (k,)) for the rows asked, one read of A."""
        f, _, gx = data_fit(op, idct2(Z).reshape(len(rows), -1).astype(np.float32), Y32[rows])
        return dct2(gx.reshape(len(rows), *shp).astype(np.float64)) * m, f * m

    z = np.zeros((B, *shp))
    g, f = grad(z, np.arange(B))
    # lam_max = ||grad at 0||_inf (above it z = 0 is optimal); continuation starts at half of it
    level = np.maximum(lam, 0.5 * np.abs(g).reshape(B, -1).max(axis=1))
    w, t = z.copy(), np.ones(B)
    calm, final, its = np.zeros(B, int), np.zeros(B, int), np.zeros(B, int)
    done, converged = np.zeros(B, bool), np.zeros(B, bool)
    obj = f + level * np.abs(z).reshape(B, -1).sum(axis=1)
    for it in range(1, max_iter + 1):
        rows = np.flatnonzero(~done)
        if rows.size == 0:
            break
        if it > 1:
            g, f = grad(w[rows], rows)
        else:
            g, f = g[rows], f[rows]
        for j, r in enumerate(rows):
            its[r] = it
            z_new = np.sign(w[r] - g[j] / L) * np.maximum(np.abs(w[r] - g[j] / L) - level[r] / L, 0.0)
            if np.vdot(w[r] - z_new, z_new - z[r]) > 0:  # adaptive restart: momentum points uphill
                t[r] = 1.0
            t_new = (1.0 + np.sqrt(1.0 + 4.0 * t[r] * t[r])) / 2.0
            change = np.linalg.norm(z_new - z[r]) / max(np.linalg.norm(z_new), 1e-12)
            w[r] = z_new + ((t[r] - 1.0) / t_new) * (z_new - z[r])
            z[r], t[r] = z_new, t_new
            obj[r] = f[j] + level[r] * float(np.abs(w[r]).sum())
            if level[r] > lam:
                if it % CONTINUATION_ITERS == 0:  # next stage: a smaller weight, from the current point
                    level[r], t[r], w[r], final[r] = max(lam, level[r] / 2.0), 1.0, z[r], it
                continue
            calm[r] = calm[r] + 1 if change < tol else 0
            if calm[r] >= PATIENCE and it - final[r] >= MIN_FINAL:
                done[r] = converged[r] = True
        if callback is not None:
            callback(it, obj)
    # the reported objective and KKT residual from A and A^T applied plainly (the definition, not the fused pass)
    R = op.forward(idct2(z).reshape(B, -1).astype(np.float32)).astype(np.float64) - Y32
    f = (R * R).sum(axis=1)
    g = 2.0 * dct2(op.adjoint(R.astype(np.float32)).astype(np.float64).reshape(B, *shp))
    out = []
    for r in range(B):
        out.append(LassoResult(image=idct2(z[r]).astype(np.float32), coef=z[r], iterations=int(its[r]),
                               kkt=kkt_residual(z[r], g[r], lam), objective=float(f[r] + lam * np.abs(z[r]).sum()),
                               converged=bool(converged[r])))
    return out


def kkt_residual(z: np.ndarray, g: np.ndarray, lam: float) -> float:
    """max over coordinates of the distance of -g from lam * subdifferential(|z|) (0 at the optimum)."""
    nz = z != 0
    r_nz = np.abs(g[nz] + lam * np.sign(z[nz]))
    r_z = np.maximum(np.abs(g[~nz]) - lam, 0.0)
    return float(max(r_nz.max(initial=0.0), r_z.max(initial=0.0)))
