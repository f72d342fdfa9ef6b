"""Total variation, the classical prior that needs no training: min_x ||A x - y||^2 + lam TV(x), x in [0, 1].

``TV`` is the isotropic total variation per channel, ``sum_{c,i,j} sqrt((D_h x)^2 + (D_v x)^2)`` with forward
differences (zero across the last row and column). Solved by FISTA with adaptive restart on the data term
(one forward and one adjoint of the operator per iteration, step ``1 / (2 ||A||^2)``, ``||A||^2`` by Lanczos
once per operator, as Lasso-DCT), its proximal step (TV plus the box [0, 1]) by :data:`PROX_ITERS` iterations of
the fast gradient projection on the dual (Beck & Teboulle 2009, "Fast gradient-based algorithms for
constrained total variation image denoising and deblurring"), warm-started from the previous step. It stops
when the objective has gone down by less than ``tol`` (relative) over the last 50 iterations, or after
``max_iter``. Images solved together
(:func:`tv_batch`) share every application of the operator, each with its own stopping.

Examples
--------
A piecewise-constant image with 40 % of its pixels kept is filled in:

>>> import numpy as np
>>> from gs_onnx.physics import Mask
>>> x = np.zeros((1, 32, 32), np.float32); x[:, 8:24, 8:24] = 1.0
>>> A = Mask((1, 32, 32), keep=0.4, seed=0)
>>> (res,) = tv_batch(A, A.forward(x.reshape(1, -1)), (1, 32, 32), lam=0.01)
>>> bool(np.abs(res.image - x).mean() < 0.02)
True
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..physics.base import as_operator

#: The stopping rule: every CHECK_EVERY iterations the objective is computed; a run stops when it has not gone
#: down by more than ``tol`` (relative, default TOL) over the last PLATEAU_CHECKS checks. (A rule on the change
#: of x stops too early where progress is slow but steady, as with a very small ``lam``: it was dropped.)
CHECK_EVERY, PLATEAU_CHECKS, TOL = 10, 5, 1e-5
#: Iterations at most.
MAX_ITER = 1000

#: TV's weight per operator type, chosen on the first 3 CelebA train faces (64 px crops) at the physics preset's
#: noise (0.01 per value; 0.1 for denoising; the paper's rule for compressed sensing) from a grid 1e-4 ... 1:
#: the best mean PSNR, or where the best sits at the grid's small end (where runs are slow and the PSNR flat)
#: the smallest weight within 0.05 dB of it; compressed sensing: the best at m/n 0.0488, 0.2 dB below the best
#: at 0.163 (benchmarks/tv_weights.py; docs/results.md).
LAM = {"gaussian": 0.003, "srdct": 0.003, "mask": 0.001, "box": 0.03, "downsample": 0.001, "fourier": 0.003,
       "blur": 0.001, "identity": 0.2}
#: The weight of an operator type not in :data:`LAM` (your own operator).
DEFAULT_LAM = 0.01


#: gs-tv's anchor weight per operator type (``gamma ||x - G||^2``, G the generator's image), chosen on the first 3
#: CelebA train faces (64 px, dcgan) at the physics preset's noise from a grid 1e-3 ... 1 (best mean PSNR;
#: compressed sensing: the best at m/n 0.163, 0.2 dB below the best at 0.0488; denoising: the grid's end).
GAMMA = {"gaussian": 0.1, "srdct": 0.1, "mask": 0.01, "box": 0.1, "downsample": 0.003, "fourier": 0.03,
         "blur": 0.01, "identity": 1.0}
DEFAULT_GAMMA = 0.03


def default_gamma(kind: str | None) -> float:
    """gs-tv's anchor weight for an operator type: :data:`GAMMA`, else :data:`DEFAULT_GAMMA`."""
    return GAMMA.get(kind or "", DEFAULT_GAMMA)


def default_lam(kind: str | None) -> float:
    """TV's weight for an operator type: :data:`LAM`, else :data:`DEFAULT_LAM`."""
    return LAM.get(kind or "", DEFAULT_LAM)


def grad(x: np.ndarray) -> np.ndarray:
    """Forward differences of (B, C, H, W) images: (B, 2, C, H, W), horizontal then vertical, zero across the
    last column and row."""
    g = np.zeros((x.shape[0], 2) + x.shape[1:], dtype=x.dtype)
    g[:, 0, :, :, :-1] = x[:, :, :, 1:] - x[:, :, :, :-1]
    g[:, 1, :, :-1, :] = x[:, :, 1:, :] - x[:, :, :-1, :]
    return g


def grad_adjoint(q: np.ndarray) -> np.ndarray:
    """The adjoint of :func:`grad` (minus the divergence): (B, 2, C, H, W) -> (B, C, H, W)."""
    h, v = q[:, 0], q[:, 1]
    out = np.zeros(q.shape[:1] + q.shape[2:], dtype=q.dtype)
    out[:, :, :, :-1] -= h[:, :, :, :-1]
    out[:, :, :, 1:] += h[:, :, :, :-1]
    out[:, :, :-1, :] -= v[:, :, :-1, :]
    out[:, :, 1:, :] += v[:, :, :-1, :]
    return out


def tv(x: np.ndarray) -> np.ndarray:
    """Isotropic TV of each image of (B, C, H, W): (B,) float64."""
    g = grad(np.asarray(x, dtype=np.float64))
    return np.sqrt((g * g).sum(axis=1)).reshape(len(x), -1).sum(axis=1)


@dataclasses.dataclass
class TVResult:
    """``image`` (C, H, W) float32 in [0, 1], iterations, objective ||A x - y||^2 + lam TV(x), converged."""

    image: np.ndarray
    iterations: int
    objective: float
    converged: bool


def tv_batch(op, Y: np.ndarray, shape: tuple[int, int, int], lam: float, *, max_iter: int = MAX_ITER,
             tol: float = TOL, lipschitz: float | None = None, base: np.ndarray | None = None,
             anchor: np.ndarray | None = None, gamma: float = 0.0,
             callback: Callable[[int, np.ndarray], None] | None = None) -> list[TVResult]:
    """TV recovery of every row of ``Y`` ((B, m)) measured by ``op`` from images of ``shape`` (C, H, W).

    ``base`` ((B, C, H, W) in [0, 1], optional): penalise the variation of the deviation from it instead,
    ``min ||A x - y||^2 + lam TV(x - base)``, x in [0, 1] (a generator's image plus a TV-regular correction:
    what the generator cannot represent). ``anchor`` ((B, C, H, W)) and ``gamma``: add ``gamma ||x - anchor||^2``,
    TV anchored to another estimate (a generator's image: method ``gs-tv``). ``lipschitz``: ``||A||^2`` if known (default:
    :func:`gs_onnx.solve.lasso.spectral_norm_sq`, cached per operator). ``callback(iteration, objective (B,))``
    every :data:`CHECK_EVERY` iterations.
    """
    from .lasso import spectral_norm_sq

    op = as_operator(op)
    Y = np.asarray(Y, dtype=np.float32).reshape(-1, op.m)
    B, n = len(Y), int(np.prod(shape))
    gamma = float(gamma) if anchor is not None else 0.0
    anchor = None if anchor is None else np.asarray(anchor, np.float32).reshape(B, *shape)
    Lf = 2.0 * ((spectral_norm_sq(op, n) if lipschitz is None else float(lipschitz)) + gamma)  # of the smooth part's grad
    mu = lam / Lf                                                                        # the prox's TV weight
    base = np.zeros((B, *shape), np.float32) if base is None else np.asarray(base, np.float32).reshape(B, *shape)
    x = np.full((B, *shape), 0.5, dtype=np.float32) if not base.any() else base.copy()
    v, t = x.copy(), np.ones(B)
    dual = np.zeros((B, 2, *shape), dtype=np.float32)   # the prox's dual, warm-started across iterations
    done = np.zeros(B, dtype=bool)
    iters = np.zeros(B, dtype=int)
    hist: list[np.ndarray] = []
    for it in range(1, max_iter + 1):
        act = np.flatnonzero(~done)
        va = v[act]
        r = np.asarray(op.forward(va.reshape(len(act), -1)), np.float32) - Y[act]
        g = 2.0 * np.asarray(op.adjoint(r), np.float32).reshape(va.shape)
        if gamma:
            g += 2.0 * gamma * (va - anchor[act])
        u, dual[act] = prox_tv(va - g / Lf - base[act], mu, dual[act], lo=-base[act], hi=1.0 - base[act])
        x_new = u + base[act]
        xa = x[act]
        # FISTA momentum, restarted where the step goes against it (O'Donoghue & Candes)
        restart = ((va - x_new) * (x_new - xa)).reshape(len(act), -1).sum(axis=1) > 0
        t_new = np.where(restart, 1.0, (1.0 + np.sqrt(1.0 + 4.0 * t[act] ** 2)) / 2.0)
        beta = np.where(restart, 0.0, (t[act] - 1.0) / t_new)
        v[act] = x_new + beta[:, None, None, None] * (x_new - xa)
        t[act], x[act], iters[act] = t_new, x_new, it
        if it % CHECK_EVERY == 0:  # the objective (computed for every row: the rows that stopped keep theirs)
            obj = _objective(op, x, Y, lam, base, anchor, gamma)
            hist.append(obj)
            if len(hist) > PLATEAU_CHECKS:
                old = hist[-1 - PLATEAU_CHECKS]
                done |= (old - np.min(hist[-PLATEAU_CHECKS:], axis=0)) <= tol * np.abs(old)
            if callback is not None:
                callback(it, obj)
        if done.all():
            break
    obj = _objective(op, x, Y, lam, base, anchor, gamma)
    return [TVResult(x[b].astype(np.float32), int(iters[b]), float(obj[b]), bool(done[b])) for b in range(B)]


#: Inner iterations of the TV prox per outer iteration (warm-started, so a few suffice).
PROX_ITERS = 10


def prox_tv(b: np.ndarray, mu: float, dual: np.ndarray | None = None, iters: int | None = None,
            lo=0.0, hi=1.0) -> tuple[np.ndarray, np.ndarray]:
    """argmin over x in [lo, hi] of ||x - b||^2 / 2 + mu TV(x), per image of (B, C, H, W), by the fast gradient
    projection on the dual (Beck & Teboulle 2009), from ``dual`` (B, 2, C, H, W) if given. Returns x and the
    dual reached (for the next warm start)."""
    r = np.zeros((len(b), 2) + b.shape[1:], np.float32) if dual is None else dual.copy()
    if mu <= 0:
        return np.clip(b, lo, hi).astype(np.float32), r
    s, t = r.copy(), 1.0
    step = 1.0 / (8.0 * mu)
    for _ in range(PROX_ITERS if iters is None else iters):
        x = np.clip(b - mu * grad_adjoint(s), lo, hi)
        r_new = s + step * grad(x)
        r_new /= np.maximum(1.0, np.sqrt((r_new * r_new).sum(axis=1, keepdims=True)))
        t_new = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        s = r_new + ((t - 1.0) / t_new) * (r_new - r)
        r, t = r_new, t_new
    return np.clip(b - mu * grad_adjoint(r), lo, hi).astype(np.float32), r


def _objective(op, x: np.ndarray, Y: np.ndarray, lam: float, base: np.ndarray | None = None,
               anchor: np.ndarray | None = None, gamma: float = 0.0) -> np.ndarray:
    r = np.asarray(op.forward(x.reshape(len(x), -1)), np.float64) - Y
    out = (r * r).sum(axis=1) + lam * tv(x if base is None else x - base)
    if gamma:
        d = (x - anchor).reshape(len(x), -1).astype(np.float64)
        out += gamma * (d * d).sum(axis=1)
    return out


#: The optimiser of gs-tv's GS stage per operator type where it is not scipy's L-BFGS-B (``--optimizer`` overrides
#: it). Inside a centre box GS alone fills the hole, and what it draws there follows the optimiser's path (faces
#: moved by up to 2.7 dB between the two, either way): the paper's L-BFGS, which the recovery graph runs, gives the
#: bindings the same image (began within 0.01 dB, dcgan within 0.3) at a cost within that noise (CelebA test faces:
#: dcgan 25.53 against scipy's 25.77 dB over 10 measurements, began 22.32 against 22.37 over 5; docs/results.md).
GS_OPTIMIZER = {"box": "lbfgs"}


def tv_weights(man, kind: str | None, lam: float | None = None, gamma: float | None = None) -> tuple[float, float]:
    """gs-tv's (lam, gamma) for model ``man`` and an operator type: the model's ``recommended.gs_tv`` (its own
    weights, chosen on its validation images), else :func:`gs_onnx.solve.tv.default_lam` and
    :func:`gs_onnx.solve.tv.default_gamma`; ``lam``/``gamma`` (``--lam``/``--gamma``) override them."""
    own = man.recommended.get("gs_tv") or {}
    return (float((own.get("lam") or {}).get(kind, default_lam(kind)) if lam is None else lam),
            float((own.get("gamma") or {}).get(kind, default_gamma(kind)) if gamma is None else gamma))
