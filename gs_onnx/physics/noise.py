"""Noise: ``y = A x + sigma * N(0, 1)``, the paper's rule for compressed sensing and per-value sigmas for
image-domain operators.

Every operator states its default (:attr:`gs_onnx.physics.Operator.noise_default`): ``"paper"`` for the
compressed-sensing operators (gaussian, srdct), whose noise follows the paper (:func:`paper_sigma`: ``||eta||``
about 0.1 at 64 px whatever ``m``), and **0.01 per value** for the others (images in [0, 1]: about 2.6 grey
levels of 255). ``gs-measure --noise auto`` (the default) takes it; ``--noise none``, ``paper`` or a number
override it.

Examples
--------
>>> import numpy as np
>>> from gs_onnx.physics import GaussianOperator, Mask
>>> op = GaussianOperator(m=100, n=12288, seed=0)
>>> round(sigma_for("auto", op), 6) == round(paper_sigma(12288, 100), 6)
True
>>> sigma_for("auto", Mask((3, 64, 64), keep=0.3)), sigma_for("0.1", Mask((3, 64, 64), keep=0.3))
(0.01, 0.1)
>>> x = np.random.default_rng(1).random((2, 12288), dtype=np.float32)
>>> measure(x, op, sigma=paper_sigma(op.n, op.m), seed=0).shape
(2, 100)
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import GSError
from .base import Operator

#: Second entry of the noise stream's SeedSequence; A's row blocks use 0, 1, 2, ...
NOISE_STREAM = 2**31 - 1
#: n at 64 x 64 RGB, where the paper's noise has ||eta|| ~ 0.1.
PAPER_N = 12288


def paper_sigma(n: int, m: int) -> float:
    """Per-measurement noise std of the paper, ``0.1 * sqrt(n / (m * 12288))``.

    At 64 px (``n = 12288``) this gives ``||eta|| ~ 0.1`` for any ``m``; for larger images the ratio
    ``E||eta||^2 / E||A x||^2`` stays as at 64 px.

    Parameters
    ----------
    n, m : int
        Signal dimension and number of measurements (both > 0).
    """
    if n <= 0 or m <= 0:
        raise GSError(f"paper_sigma needs positive n and m, got n={n}, m={m}")
    return 0.1 * math.sqrt(n / (m * PAPER_N))


def noise_sigma(spec: str | float, n: int, m: int) -> float:
    """Per-measurement noise std from a user spec.

    Parameters
    ----------
    spec : str or float
        ``"paper"`` (:func:`paper_sigma`), ``"none"`` (0.0), or a finite non-negative number or
        number string.
    n, m : int
        Signal dimension and number of measurements.

    Raises
    ------
    GSError
        Any other spec.
    """
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "paper":
            return paper_sigma(n, m)
        if s == "none":
            return 0.0
        try:
            value = float(s)
        except ValueError:
            raise GSError(f"--noise must be 'auto' (the operator's default), 'paper', 'none' or a non-negative number, got {spec!r}") from None
    elif isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(spec, bool):
        value = float(spec)
    else:
        raise GSError(f"--noise must be 'auto' (the operator's default), 'paper', 'none' or a non-negative number, got {spec!r}")
    if not math.isfinite(value) or value < 0:
        raise GSError(f"--noise must be finite and non-negative, got {spec!r}")
    if value > 1e6:
        raise GSError(f"noise std {spec!r} is absurdly large for images in [0, 1] (at most 1e6)")
    return value


def measure(x: np.ndarray, op: Operator, sigma: float, seed: int) -> np.ndarray:
    """Noisy measurements ``y = A x + sigma * N(0, 1)``.

    Parameters
    ----------
    x : ndarray, float32, shape (B, n)
        Flattened images (C, H, W order), values in [0, 1].
    op : Operator
        The measurement operator ``A`` (``op.n == n``).
    sigma : float
        Per-measurement noise std (>= 0); see :func:`noise_sigma`.
    seed : int
        Non-negative seed; the noise is drawn from
        ``Generator(PCG64(SeedSequence([seed, 2**31 - 1])))``, a stream separate from ``A``'s.

    Returns
    -------
    ndarray, float32, shape (B, m)
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != op.n:
        raise GSError(f"images must have shape (B, {op.n}) for this operator, got {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise GSError("images contain NaN or Inf")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise GSError(f"noise std must be finite and non-negative, got {sigma!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GSError(f"seed must be a non-negative integer, got {seed!r}")
    y = np.asarray(op.forward(x), dtype=np.float32)
    if sigma > 0:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), NOISE_STREAM])))
        noise = rng.standard_normal(y.shape, dtype=np.float32)
        noise *= np.float32(sigma)
        y += noise
    return y


def sigma_for(spec, op: Operator) -> float:
    """The per-measurement noise std for ``op`` from a user spec: ``"auto"`` (the operator's
    :attr:`~gs_onnx.physics.Operator.noise_default`) or anything :func:`noise_sigma` takes."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        spec = op.noise_default
    return noise_sigma(spec, op.n, op.m)


def estimate_sigma(image: np.ndarray) -> float:
    """The std of white Gaussian noise on an image, estimated from the image alone: the median absolute value of
    its finest diagonal Haar detail coefficients divided by 0.6745 (Donoho & Johnstone 1994), per channel, the
    median over channels. What gs-pnp's denoising plan uses where the measurements do not record their sigma.

    Parameters
    ----------
    image : ndarray, float, shape (C, H, W) or (H, W), H and W >= 2

    Examples
    --------
    >>> import numpy as np
    >>> x = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (3, 64, 1))
    >>> noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    >>> round(estimate_sigma(noisy), 2)
    0.05
    """
    a = np.asarray(image, np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape[1:]) < 2:
        raise GSError(f"estimate_sigma needs a (C, H, W) image of at least 2 x 2, got {a.shape}")
    h, w = a.shape[1] // 2 * 2, a.shape[2] // 2 * 2
    a = a[:, :h, :w]
    hh = (a[:, 0::2, 0::2] - a[:, 0::2, 1::2] - a[:, 1::2, 0::2] + a[:, 1::2, 1::2]) / 2.0
    return float(np.median(np.median(np.abs(hh).reshape(len(a), -1), axis=1)) / 0.6745)
