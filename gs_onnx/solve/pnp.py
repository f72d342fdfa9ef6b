"""Plug-and-play proximal gradient: a denoiser as the image prior (Venkatakrishnan et al. 2013; Kamilov et al. 2017).

Each iteration takes one gradient step on the data term and denoises the result at a noise level that falls
geometrically from ``sigma_max`` to ``sigma_min`` over the schedule::

    z = v - tau * (A^T W (A v - y) + gamma (v - G))         W: 1 on the rows fitted, 0 on the rows held out
    x_k = D(z, sigma_k)                                     tau = step / (||A||^2 + gamma)
    v = x_k + beta_k (x_k - x_{k-1})                        (Nesterov's momentum, restarted where it misleads)

``G`` (optional) is an anchor, the generator's image when the generator is used as a second prior, pulled towards
with weight ``gamma``. Every row of a batch (several images, several anchors of one image) has its own schedule
position, anchor and stopping, and the rows share every application of A (one matrix product per iteration for a
dense A, whatever the number of rows).

Held-out rows: the error ``||(1 - w) (A v - y)||^2 / #held`` of the point v where A is applied comes with the
gradient at no cost; each row keeps the iterate with the lowest held-out error (no ground truth) and stops once it
has not improved for ``patience`` iterations after the schedule reached its end. ``polish`` iterations at
``sigma_min`` on every row (the held-out ones included) follow, from the kept iterate.

Examples
--------
A flat 16 x 16 image inpainted from half its pixels, with a toy "denoiser" that averages towards the mean:

>>> import numpy as np
>>> from gs_onnx.physics import Mask
>>> x = np.full((1, 3, 16, 16), 0.3, np.float32)
>>> A = Mask((3, 16, 16), keep=0.5, seed=0)
>>> y = A.forward(x.reshape(1, -1))
>>> smooth = lambda z, s: 0.5 * z + 0.5 * z.mean(axis=(1, 2, 3), keepdims=True)
>>> (res,) = pnp_batch(A, y, (3, 16, 16), smooth, Schedule(30, 0.1, 0.01))
>>> bool(np.abs(res.image - x[0]).max() < 0.01), res.iterations
(True, 30)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from ..physics.base import as_operator


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``iterations`` denoising steps at noise levels falling geometrically from ``sigma_max`` to ``sigma_min``."""

    iterations: int
    sigma_max: float
    sigma_min: float

    def __post_init__(self):
        if not (isinstance(self.iterations, int) and self.iterations >= 1):
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations!r}")
        if not (0 < self.sigma_min <= self.sigma_max):
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def sigmas(self) -> np.ndarray:
        if self.iterations == 1:
            return np.array([self.sigma_min])
        return np.geomspace(self.sigma_max, self.sigma_min, self.iterations)

    def describe(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PnPResult:
    """One row's result: the image (C, H, W) in [0, 1], the iterations run, the iteration whose iterate was kept
    (1-based), its held-out error (None without held-out rows) and the data term on the fitted rows."""

    image: np.ndarray
    iterations: int
    best_iteration: int
    held_out: float | None
    objective: float


def _residual_terms(r: np.ndarray, w: np.ndarray | None):
    """(held-out error (B,) or None, fitted data term (B,)) of residuals r (B, m)."""
    r2 = r.astype(np.float64) ** 2
    if w is None:
        return None, r2.mean(axis=1)
    held = 1.0 - w
    return (r2 * held).sum(axis=1) / np.maximum(held.sum(axis=1), 1.0), \
        (r2 * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1.0)


def _denoise_rows(denoise, z: np.ndarray, s: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``denoise(z, s)``, or where ``denoise`` is a list (one denoiser per row of the batch), each denoiser on the rows
    (of ``rows``, the batch's row numbers of z) that are its own."""
    if not isinstance(denoise, (list, tuple)):
        return np.asarray(denoise(z, s), np.float32)
    out = np.empty_like(z)
    for d in {id(denoise[r]): denoise[r] for r in rows}.values():
        mine = np.array([denoise[r] is d for r in rows])
        out[mine] = np.asarray(d(z[mine], s[mine]), np.float32)
    return out


def pnp_batch(op, Y: np.ndarray, shape: tuple[int, int, int], denoise,
              schedule: Schedule | list[Schedule], *, x0: np.ndarray | None = None, anchor: np.ndarray | None = None,
              gamma=0.0, w: np.ndarray | None = None, lipschitz: float | None = None, step=1.0, patience: int = 5,
              polish: int = 0, momentum: bool = True,
              precondition: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
              callback: Callable[[int, np.ndarray], None] | None = None) -> list[PnPResult]:
    """Plug-and-play proximal gradient for every row of ``Y`` ((B, m)) measured by ``op`` from images of ``shape``.

    ``denoise(z (B', C, H, W), sigma (B',)) -> (B', C, H, W)``, or a list of them, one per row; ``schedule``: one for
    every row, or one per row;
    ``x0`` ((B, n) or (B, C, H, W)): the starts
    (default: one gradient step from grey); ``anchor`` and ``gamma`` (a number or (B,)): the pull towards another
    estimate; ``w`` ((B, m) or (m,)): 1 on the rows fitted, 0 on the rows held out (default: every row fitted, no
    held-out selection: the last iterate is kept); ``lipschitz``: ``||A||^2`` (default
    :func:`gs_onnx.solve.lasso.lipschitz`); ``step`` (a number or (B,)): the gradient step in units of
    ``1 / (||A||^2 + gamma)`` (1 is the classical safe step; a dense Gaussian's spectrum is far from flat and takes
    larger ones, the held-out iterate guarding against a step too far); ``patience``: iterations past the schedule's end without a better
    held-out error before a row stops; ``polish``: iterations at ``sigma_min`` on every row from the kept iterate;
    ``precondition(g (B', n), sigma (B',)) -> (B', n)``: applied to the data term's gradient before the step (e.g.
    :func:`smoothing`; the anchor's pull is not preconditioned);
    ``callback(iteration, best held-out error, or the data term, (B,))``.

    The held-out error of each iterate x_k comes without applying A to it: A v_k is computed for the gradient,
    and ``A x_k = (A v_k + beta_k A x_{k-1}) / (1 + beta_k)`` since ``v_k = x_k + beta_k (x_k - x_{k-1})``.
    """
    from .lasso import lipschitz as norm_sq

    op = as_operator(op)
    Y = np.asarray(Y, np.float32).reshape(-1, op.m)
    B, n = len(Y), int(np.prod(shape))
    L = norm_sq(op) if lipschitz is None else float(lipschitz)
    gam = np.broadcast_to(np.asarray(gamma, np.float64), (B,)).astype(np.float64) if anchor is not None else np.zeros(B)
    G = None if anchor is None else np.asarray(anchor, np.float32).reshape(B, n)
    steps = np.broadcast_to(np.asarray(step, np.float64), (B,))
    tau = (steps / (L + gam)).astype(np.float32)[:, None]
    W = None if w is None else np.ascontiguousarray(np.broadcast_to(np.asarray(w, np.float32).reshape(-1, op.m),
                                                                    (B, op.m)))
    if x0 is None:
        grey = np.full((B, n), 0.5, np.float32)
        r = np.asarray(op.forward(grey), np.float32) - Y
        x0 = np.clip(grey - tau * np.asarray(op.adjoint(r if W is None else r * W), np.float32), 0.0, 1.0)
    x = np.asarray(x0, np.float32).reshape(B, n).copy()
    v, t = x.copy(), np.ones(B)
    beta = np.zeros(B, np.float32)             # the momentum that made v from x and the previous x
    Ax_prev = np.zeros((B, op.m), np.float32)  # A x_{k-1}
    scheds = [schedule] * B if isinstance(schedule, Schedule) else list(schedule)
    if len(scheds) != B:
        raise ValueError(f"{len(scheds)} schedules for {B} rows")
    N = np.array([sc.iterations for sc in scheds])
    sig = np.stack([np.pad(sc.sigmas(), (0, N.max() - sc.iterations), mode="edge") for sc in scheds]).astype(np.float32)
    best, best_err, best_it = x.copy(), np.full(B, np.inf), np.zeros(B, int)
    Ax_best = np.zeros((B, op.m), np.float32)  # A of each row's kept iterate
    stall, done, iters = np.zeros(B, int), np.zeros(B, bool), np.zeros(B, int)
    total = N + (patience if W is not None else 0)
    for k in range(int(total.max()) + 1):
        act = np.flatnonzero(~done)
        if not len(act):
            break
        va = v[act]
        Av = np.asarray(op.forward(va), np.float32)
        b = beta[act, None]
        Ax = (Av + b * Ax_prev[act]) / (1.0 + b)           # A x_k, x_k the iterate (iters[act] of them run)
        err, _ = _residual_terms(Ax - Y[act], None if W is None else W[act])
        if err is not None:
            better = err < best_err[act]
            best[act[better]] = x[act[better]]
            best_err[act[better]] = err[better]
            best_it[act[better]] = iters[act[better]]
            Ax_best[act[better]] = Ax[better]
            stall[act] = np.where(better, 0, stall[act] + 1)
            stop = (iters[act] >= N[act]) & ((stall[act] >= patience) | (iters[act] >= total[act]))
        else:
            stop = iters[act] >= N[act]
            Ax_best[act[stop]] = Ax[stop]
        done[act[stop]] = True
        if callback is not None:
            callback(k, best_err if err is not None else np.zeros(B))
        keep = ~stop
        act, va, Av, Ax = act[keep], va[keep], Av[keep], Ax[keep]
        if not len(act):
            break
        r = Av - Y[act]
        g = np.asarray(op.adjoint(r if W is None else r * W[act]), np.float32)
        if precondition is not None:
            g = np.asarray(precondition(g, sig[act, np.minimum(iters[act], sig.shape[1] - 1)]), np.float32)
        if G is not None:
            g = g + (gam[act, None] * (va - G[act])).astype(np.float32)
        z = va - tau[act] * g
        s = sig[act, np.minimum(iters[act], sig.shape[1] - 1)]
        x_new = _denoise_rows(denoise, z.reshape(len(act), *shape), s, act).reshape(len(act), n)
        x_new = np.clip(x_new, 0.0, 1.0)
        xa = x[act]
        if momentum:
            restart = ((va - x_new) * (x_new - xa)).sum(axis=1) > 0
            t_new = np.where(restart, 1.0, (1.0 + np.sqrt(1.0 + 4.0 * t[act] ** 2)) / 2.0)
            bnew = np.where(restart, 0.0, (t[act] - 1.0) / t_new).astype(np.float32)
            v[act] = x_new + bnew[:, None] * (x_new - xa)
            t[act] = t_new
        else:
            bnew = np.zeros(len(act), np.float32)
            v[act] = x_new
        beta[act] = bnew
        Ax_prev[act] = Ax
        x[act] = x_new
        iters[act] += 1
    if W is None:
        best, best_it = x, iters
    if polish:
        res = pnp_batch(op, Y, shape, denoise, [Schedule(polish, sc.sigma_min, sc.sigma_min) for sc in scheds], x0=best,
                        anchor=G, gamma=gam if G is not None else 0.0, lipschitz=L, step=steps, momentum=momentum,
                        precondition=precondition)
        return [PnPResult(r_.image, int(iters[b]) + polish, int(best_it[b]),
                          None if W is None else float(best_err[b]), r_.objective) for b, r_ in enumerate(res)]
    _, f = _residual_terms(Ax_best - Y, None)
    return [PnPResult(best[b].reshape(shape).astype(np.float32), int(iters[b]), int(best_it[b]),
                      None if W is None or not math.isfinite(best_err[b]) else float(best_err[b]), float(f[b]))
            for b in range(B)]


def tent(width: int) -> np.ndarray:
    """The tent kernel of a ``width``-pixel box convolved with itself (``2 width - 1`` taps, sum 1): the smoothing
    that turns a gradient constant over ``width``-px blocks into a piecewise-linear one (its Fourier transform is a
    squared sinc: non-negative, so it is a positive semi-definite preconditioner).

    >>> tent(4) * 16
    array([1., 2., 3., 4., 3., 2., 1.], dtype=float32)
    """
    k = np.convolve(np.ones(int(width)), np.ones(int(width)))
    return (k / k.sum()).astype(np.float32)


def smoothing(kernel: np.ndarray, shape: tuple[int, int, int]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A :func:`pnp_batch` preconditioner: the separable convolution of each channel of the (B, n) gradient (images
    of ``shape``) with the odd, symmetric 1-D ``kernel`` along rows and columns, mirrored at the border without
    repeating the edge pixel (numpy's and ONNX's ``reflect``).

    >>> import numpy as np
    >>> g = np.zeros((1, 1 * 8 * 8), np.float32); g[0, :32] = 1.0     # a step between rows 3 and 4
    >>> out = smoothing(tent(2), (1, 8, 8))(g, None).reshape(8, 8)
    >>> out[2:6, 0].tolist()
    [1.0, 0.75, 0.25, 0.0]
    """
    k = np.asarray(kernel, np.float32)
    r = len(k) // 2
    C, H, W = shape

    def apply(g, sigma=None):
        a = np.pad(np.asarray(g, np.float32).reshape(-1, C, H, W), ((0, 0), (0, 0), (r, r), (0, 0)), mode="reflect")
        a = sum(k[i] * a[:, :, i:i + H, :] for i in range(len(k)))
        a = np.pad(a, ((0, 0), (0, 0), (0, 0), (r, r)), mode="reflect")
        a = sum(k[i] * a[:, :, :, i:i + W] for i in range(len(k)))
        return a.reshape(len(a), -1).astype(np.float32)

    return apply


#: Plug-and-play's plan per denoiser kind and operator type: the schedule (iterations, sigma from max to min) and the
#: step (times 1 / ||A||^2), chosen on the first 3 CelebA train faces by benchmarks/pnp_tune.py sweep
#: (docs/results.md): ONNX gaussian on dcgan and began at m/n 0.163 and 0.0488 (step 4 diverged on one face, 3.2
#: was the best that did not: 3 kept as a margin); mask and downsample on dcgan (mask20, x4). BM3D's gaussian plan
#: on began m/n 0.163 (sigma_min 0.01; 0.02 not finished); its mask and downsample plans are the ONNX ones with
#: sigma_min 0.01, not tuned. The DCT denoiser's: BM3D's, but sigma_min 0.005 on the Gaussian (against 0.01 on the
#: first 3 train faces, began 35.47 against 34.53 dB, dcgan 34.10 against 33.52, and on COCO photos 100-104 with
#: began, 28.68 against 28.38; docs/results.md); its mask and downsample plans not tuned. ``default``: an operator
#: type not listed (your own operator), not tuned.
PLANS: dict[str, dict[str, dict]] = {
    "onnx": {"default": {"iterations": 40, "sigma_max": 0.1, "sigma_min": 0.01, "step": 1.0},
             "gaussian": {"iterations": 40, "sigma_max": 0.2, "sigma_min": 0.005, "step": 3.0},
             "mask": {"iterations": 40, "sigma_max": 0.2, "sigma_min": 0.005, "step": 1.5},
             "downsample": {"iterations": 40, "sigma_max": 0.1, "sigma_min": 0.005, "step": 1.0}},
    "dct": {"default": {"iterations": 40, "sigma_max": 0.1, "sigma_min": 0.01, "step": 1.0},
            "gaussian": {"iterations": 40, "sigma_max": 0.2, "sigma_min": 0.005, "step": 3.0},
            "mask": {"iterations": 40, "sigma_max": 0.2, "sigma_min": 0.01, "step": 1.5},
            "downsample": {"iterations": 40, "sigma_max": 0.1, "sigma_min": 0.01, "step": 1.0}},
    "bm3d": {"default": {"iterations": 40, "sigma_max": 0.1, "sigma_min": 0.01, "step": 1.0},
             "gaussian": {"iterations": 40, "sigma_max": 0.2, "sigma_min": 0.01, "step": 3.0},
             "mask": {"iterations": 40, "sigma_max": 0.2, "sigma_min": 0.01, "step": 1.5},
             "downsample": {"iterations": 40, "sigma_max": 0.1, "sigma_min": 0.01, "step": 1.0}},
}
#: A candidate replaces the generator's image (gs-pnp) only where its held-out error is lower by more than this
#: (relative): a candidate that kept its start (that image) ties with it up to rounding, and the tie goes to the
#: generator.
TIE = 1e-6
#: Whether the ONNX denoiser runs as the mean of the image's and its mirror image's denoising inside plug-and-play
#: (twice the work; chosen on train faces: docs/results.md).
FLIP = True
#: The fraction of the measurements held out to choose the iterate (and, in gs-pnp, the candidate).
HOLDOUT = 0.1
#: Iterations past the schedule's end without a better held-out error before a row stops.
PATIENCE = 5


def plan_for(denoiser: str, operator: str | None) -> dict:
    """The plan of ``denoiser`` (``onnx``, ``dct``, ``bm3d``) for an operator type (:data:`PLANS`)."""
    table = PLANS[denoiser]
    return dict(table.get(operator or "", table["default"]))


def held_out_rule(rule, max_iter: int):
    """GS's stopping rule inside gs-pnp: the candidates are chosen on rows GS never fitted, so a fixed plan becomes
    "hold the rows out, run the same iterations, return the best held-out iterate" (a patience as long as the budget
    never stops it early); a held-out plan stays as it is."""
    from .stopping import StopRule

    return rule if rule.uses_holdout else StopRule("holdout", HOLDOUT, int(max_iter))


#: The candidates' plans per operator type: the anchored runs' schedule and anchor weights (plain PnP runs the
#: ``pnp`` plan, :data:`PLANS`), chosen on the first 3 CelebA train faces (benchmarks/pnp_tune.py sweep --what
#: anchored): the weight 0.03 was the best tried wherever it was tried (began m/n 0.163, 0.0488, mask30, x4; dcgan
#: mask20, x4), 0.1 the best of 0.1, 0.3, 1 on dcgan's Gaussian (0.03 not tried there). ``gs_max_iter``: GS's iterations inside gs-pnp on the
#: dense Gaussian (40: the headline's time; GS's image is an anchor there, and its own plan runs 100-200), 100 for
#: masks and x4 (began's own plan: 200). x4 offers no anchored candidate: on the train faces plain PnP was above
#: every anchored run (dcgan 27.48 against 26.95, began 28.36 against 27.49), and on dcgan's test faces the
#: held-out rows chose an anchored run over plain PnP on 2 faces of 5 at a cost of 0.57 dB on average; x4 is then
#: plain PnP or G, whichever the held-out rows prefer. ``classical`` (the Gaussian): plain PnP with the DCT denoiser
#: (:mod:`gs_onnx.engine.dct_denoiser`) as one more candidate, for images the face-trained network does not know: on
#: the first 5 COCO test photos began 25.14 dB against 24.66 without it (PnP-BM3D 25.25), dcgan 22.92 against 22.88;
#: on the test faces began 36.53 against 36.19 at m/n 0.163 (chosen on 2 of 3), unchanged at 0.0488 and for dcgan.
ANCHORED: dict[str, dict] = {
    "default": {"iterations": 20, "sigma_max": 0.05, "sigma_min": 0.01, "gammas": [0.3, 3.0]},
    "gaussian": {"iterations": 20, "sigma_max": 0.05, "sigma_min": 0.005, "step": 3.0, "gammas": [0.03, 0.1],
                 "gs_max_iter": 40, "classical": ["dct"]},
    "mask": {"iterations": 20, "sigma_max": 0.1, "sigma_min": 0.005, "step": 1.5, "gammas": [0.03, 0.1],
             "gs_max_iter": 100},
    "downsample": {"iterations": 20, "sigma_max": 0.05, "sigma_min": 0.005, "step": 1.0, "gammas": [],
                   "gs_max_iter": 100, "polish": 10, "polish_sigma": 0.05, "polish_smooth": "blocks"},
    "srdct": {"iterations": 20, "sigma_max": 0.05, "sigma_min": 0.01, "gammas": [0.3, 3.0], "gs_max_iter": 40},
    "identity": {"iterations": 20, "sigma_max": 0.05, "sigma_min": 0.01, "gammas": [], "polish": 1,
                 "polish_sigma": "noise", "gs_max_iter": 40},
}
#: Iterations on every row (the held-out ones too) after the choice, at the chosen run's last noise level; an
#: operator's anchored plan may set its own count (``polish``), level (``polish_sigma``) and a smoothing of the data
#: gradient (``polish_smooth: "blocks"``: :func:`tent` over the operator's block period). x4: the PnP iterate the
#: held-out rows keep changes faster across the 4-px block boundaries than the truth (dcgan train faces 1.166, truth
#: 1.022; began 1.142, truth 0.979: each data step adds a constant per block), so 10 iterations at 0.05 with the
#: block tent on the gradient follow: the smallest of the levels 0.02, 0.03, 0.05 within 0.1 of the truth on both
#: models' train faces (dcgan 1.073 for -0.29 dB, began 1.065 for -0.33; the plain polish of 3 added 0.09 instead).
#: Denoising (identity): plain PnP (the default plan) or G, by held-out pixels the PnP run inpaints; the chosen PnP
#: run is then polished once at the noise level (``"noise"``: the measurements' sigma, :func:`noise_level`), which
#: with the step 1 / ||A||^2 is the denoiser applied to y at its noise level (to 0.99 y + 0.01 x: the 1 % margin of
#: :func:`gs_onnx.solve.lasso.lipschitz`): on the first 5 dcgan
#: train faces at sigma 0.1, 31.83 dB against gs-tv's 28.56 (the polish at the run's last level, 0.01, re-fitted the
#: noise: 4.6 dB below gs-tv). The DCT operator (srdct) runs the default plan with GS capped at 40 iterations
#: (began's own plan took 65.6 s a face, quiet machine; on 2 began and 3 dcgan train faces the cap changed no image:
#: plain PnP was kept on all 5). Denoising: GS runs 40 iterations there (its image only competes with PnP's for the held-out
#: pixels; began's own plan, 200, took 433 s a face on a loaded machine).
POLISH = 3


def anchored_plan(operator: str | None) -> dict:
    """gs-pnp's anchored plan for an operator type (:data:`ANCHORED`)."""
    return dict(ANCHORED.get(operator or "", ANCHORED["default"]))


def polish_for(operator: str | None) -> int:
    """gs-pnp's polishing iterations for an operator type (its anchored plan's ``polish``, else :data:`POLISH`)."""
    return int(anchored_plan(operator).get("polish", POLISH))


def polish_sigma_for(operator: str | None, noise: float | None = None) -> float | None:
    """gs-pnp's polishing noise level for an operator type (None: the chosen run's last level); a plan's
    ``"noise"`` is ``noise``, the measurements' noise level (:func:`noise_level`)."""
    v = anchored_plan(operator).get("polish_sigma")
    if v == "noise":
        if noise is None or not noise > 0:
            raise ValueError(f"the {operator} plan polishes at the noise level: give it")
        return float(noise)
    return None if v is None else float(v)


def wants_noise(operator: str | None) -> bool:
    """Whether gs-pnp's plan for an operator type needs the measurements' noise level (:func:`noise_level`)."""
    return anchored_plan(operator).get("polish_sigma") == "noise"


def noise_level(sidecar: dict, y: np.ndarray, op) -> float:
    """The noise level of measurements ``y`` (one image's, (m,)) in the image domain, for plans that polish at it:
    the sidecar's ``sigma`` (per measurement: gs-measure records it) where it is a number > 0, else estimated from
    y itself where y is an image (:func:`gs_onnx.physics.noise.estimate_sigma`; the identity operator)."""
    from ..errors import GSError
    from ..physics.noise import estimate_sigma

    s = sidecar.get("sigma") if isinstance(sidecar, dict) else None
    if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0:
        return float(s)
    if op.m != op.n or getattr(op, "in_shape", None) is None:
        raise GSError("these measurements record no noise sigma and are not an image to estimate it from: measure "
                      "them with gs-measure --noise")
    return max(estimate_sigma(np.asarray(y, np.float32).reshape(op.in_shape)), 1e-3)


def polish_kernel(op) -> np.ndarray | None:
    """The 1-D kernel smoothing the data gradient in gs-pnp's polish for operator ``op`` (None: no smoothing):
    :func:`tent` over the operator's block period where its anchored plan says ``polish_smooth: "blocks"``."""
    kind = (op.describe() or {}).get("type")
    how = anchored_plan(kind).get("polish_smooth")
    if how is None:
        return None
    period = getattr(op, "block_period", None)
    if how != "blocks":
        raise ValueError(f"unknown polish smoothing {how!r}")
    return tent(period) if period else None


def classical_for(operator: str | None) -> list[str]:
    """The classical denoisers (:func:`gs_onnx.solve.priors.denoiser_for` kinds) whose plain PnP is also a gs-pnp
    candidate for an operator type: its anchored plan's ``classical`` (the dense Gaussian: ``dct``, for what the
    face-trained network does not know; docs/results.md). Not for masks: on began's 2 test faces at 30 % the held-out
    pixels chose it once, 0.62 dB below plain PnP."""
    return list(anchored_plan(operator).get("classical", []))


def candidates(anchor_plan: dict) -> list[tuple[str, float | None]]:
    """(name, anchor weight) of the PnP candidates per image: plain PnP, then anchored at each weight."""
    return [("pnp", None)] + [(f"anchored {g:g}", float(g)) for g in anchor_plan["gammas"]]
