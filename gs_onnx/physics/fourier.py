"""Subsampled Fourier measurements: the 2-D DFT of each channel at a seeded set of frequencies (the MRI setting
the paper names as its motivation).

Examples
--------
>>> import numpy as np
>>> A = Fourier((3, 64, 64), keep=0.25, density="centre", seed=0)
>>> A.out_shape                       # per channel: 1024 frequencies, (real, imaginary)
(3, 1024, 2)
>>> x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
>>> X = np.fft.fft2(x[0].astype(np.float64), norm="ortho").reshape(3, -1)[:, A.freqs]
>>> bool(np.allclose(A(x)[0, ..., 0], X.real, atol=1e-5) and np.allclose(A(x)[0, ..., 1], X.imag, atol=1e-5))
True
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GSError
from .base import Operator, Param, _field, check_float, check_int, register
from .image import _checked_mn, _i64, _image_shape, _rng

FOURIER_STREAM = 2**31 - 7
DENSITIES = ("uniform", "centre")


def frequency_radius(h: int, w: int) -> np.ndarray:
    """Normalised distance of every frequency of ``numpy.fft.fft2`` (flat index ``u * W + v``) from DC, in
    [0, 1]: ``sqrt((fu / (H/2))^2 + (fv / (W/2))^2) / sqrt(2)`` with signed frequencies fu, fv."""
    fu = (np.arange(h) + h // 2) % h - h // 2
    fv = (np.arange(w) + w // 2) % w - w // 2
    r = np.sqrt((fu[:, None] / (h / 2)) ** 2 + (fv[None, :] / (w / 2)) ** 2) / math.sqrt(2)
    return np.minimum(r, 1.0).reshape(-1)


def sampling_mask(h: int, w: int, keep: float, density: str, centre: float, seed: int) -> np.ndarray:
    """The sorted flat indices of the kept frequencies.

    ``k = round(keep * H * W)``. ``uniform``: k frequencies uniformly at random. ``centre``: the
    ``round(centre * k)`` frequencies nearest DC (by :func:`frequency_radius`, ties by index) are all kept, the
    others drawn with weights ``(1 - r)^2 + 0.001`` (variable density). Both draw by weighted keys
    ``log(u) / weight`` with ``u = Generator(PCG64(SeedSequence([seed, 2**31 - 7]))).random(H * W)``, keeping the
    largest (Efraimidis-Spirakis sampling without replacement).
    """
    n = h * w
    k = int(round(keep * n))
    if k < 1:
        raise GSError(f"fourier: keep {keep} of {n} frequencies keeps none")
    u = _rng(seed, FOURIER_STREAM).random(n)
    r = frequency_radius(h, w)
    if density == "uniform":
        weight = np.ones(n)
        fixed = np.zeros(0, np.int64)
    else:
        kc = int(round(centre * k))
        fixed = np.argsort(r, kind="stable")[:kc]
        weight = (1.0 - r) ** 2 + 1e-3
    keys = np.log(np.maximum(u, 1e-300)) / weight
    keys[fixed] = np.inf
    order = np.lexsort((np.arange(n), -keys))  # largest keys first, ties by index
    return np.sort(order[:k]).astype(np.int64)


@register
class Fourier(Operator):
    """Subsampled 2-D DFT per channel with orthonormal scaling, complex values stored as real pairs.

    ``y[c, j] = (Re X_c[f_j], Im X_c[f_j])`` with ``X_c = fft2(x_c) / sqrt(H W)`` and ``f_j`` the kept
    frequencies (:func:`sampling_mask`, the same for every channel): ``out_shape = (C, k, 2)``. ``A^T y`` is the
    real part of the zero-filled orthonormal inverse DFT, the image a radiologist would call the zero-filled
    reconstruction (:meth:`preview`). A real image's spectrum is conjugate-symmetric, so a frequency and its
    mirror carry the same information; the mask does not exclude mirrored pairs.

    Parameters
    ----------
    image_shape : (C, H, W)
    keep : float in (0, 1]
        Fraction of the H x W frequencies kept.
    density : "uniform" or "centre"
        Uniformly random, or variable density with a fully sampled centre.
    centre : float in [0, 1)
        With ``density="centre"``: the fraction of the kept frequencies taken, all of them, nearest DC.
    seed : int
    """

    type = "fourier"
    params = (Param("keep", float, 0.25, "fraction of the frequencies kept, in (0, 1]"),
              Param("density", str, "centre", "uniform | centre (variable density with a fully sampled centre)",
                    DENSITIES),
              Param("centre", float, 0.25, "with --density centre: fraction of the kept frequencies that form the "
                    "fully sampled centre"))

    def __init__(self, image_shape, keep: float, density: str = "centre", centre: float = 0.25, seed: int = 0):
        c, h, w = _image_shape(image_shape, "fourier")
        self.keep = check_float(keep, "fourier: keep", 0.0, 1.0)
        if density not in DENSITIES:
            raise GSError(f"fourier: density must be one of {', '.join(DENSITIES)}, got {density!r}")
        self.density = density
        self.centre = check_float(centre, "fourier: centre", 0.0, 1.0, lo_open=False, hi_open=True)
        self.seed = check_int(seed, "fourier: seed", 0)
        self.freqs = sampling_mask(h, w, self.keep, density, self.centre, self.seed)
        self._set_shapes((c, h, w), (c, self.freqs.size, 2))

    @property
    def nbytes(self) -> int:
        c, h, w = self.in_shape
        return 8 * (self.freqs.size + h * w) + 16 * c * h * w  # indices, scatter map, one complex image per call

    def _forward(self, x):
        c, h, w = self.in_shape
        X = np.fft.fft2(x.reshape(x.shape[0], c, h, w).astype(np.float64), norm="ortho").reshape(x.shape[0], c, -1)
        Xk = X[:, :, self.freqs]
        return np.stack([Xk.real, Xk.imag], axis=-1).astype(np.float32).reshape(x.shape[0], -1)

    def _adjoint(self, y):
        c, h, w = self.in_shape
        pairs = y.reshape(y.shape[0], c, -1, 2).astype(np.float64)
        Z = np.zeros((y.shape[0], c, h * w), np.complex128)
        Z[:, :, self.freqs] = pairs[..., 0] + 1j * pairs[..., 1]
        return np.fft.ifft2(Z.reshape(y.shape[0], c, h, w), norm="ortho").real.astype(np.float32) \
            .reshape(y.shape[0], -1)

    def describe(self) -> dict[str, Any]:
        return {"type": "fourier", "in_shape": list(self.in_shape), "keep": self.keep, "density": self.density,
                "centre": self.centre, "seed": self.seed, "m": self.m, "n": self.n, "dtype": "float32",
                "transform": "numpy.fft.fft2 per channel, norm='ortho'",
                "layout": "channel, kept frequency (sorted flat index u*W+v), (real, imaginary)",
                "rng": f"numpy PCG64, SeedSequence([seed, {FOURIER_STREAM}]): random(H*W) keys (sampling_mask)"}

    @classmethod
    def from_description(cls, d, **_):
        return _checked_mn(cls(_field(d, "in_shape", list), _field(d, "keep", float), _field(d, "density", str),
                               _field(d, "centre", float, 0.25), _field(d, "seed", int)), d)

    @classmethod
    def build(cls, image_shape, seed, *, keep=0.25, density="centre", centre=0.25, **_):
        return cls(image_shape, keep, density, centre, seed)

    def cpu_place(self) -> str:
        return "host"  # numpy's FFT beats ONNX Runtime's DFT on the CPU (docs/benchmarks.md)

    def onnx_form(self):
        """Two 1-D DFTs (ONNX ``DFT``, float64: ORT's float32 DFT loses ~1e-4) and a Gather of the kept
        frequencies; the adjoint gathers them back from a zero-padded copy (no Scatter) and runs two inverse
        DFTs (ONNX scales each by 1/N, so the result is multiplied by sqrt(H W))."""
        from .onnxform import OnnxForm

        c, h, w = self.in_shape
        k = self.freqs.size
        full = np.zeros(h * w, np.int64)
        full[self.freqs] = np.arange(1, k + 1)

        def fwd(b, x):
            xd = b.op("Cast", [x], "xd", to=11)
            img = b.op("Reshape", [xd, b.const(_i64([-1, c, h, w, 1]), "img5")], "img")
            X = b.op("DFT", [img], "Xh", axis=2, onesided=0)
            X = b.op("DFT", [X], "Xhw", axis=3, onesided=0)
            X = b.op("Mul", [X, b.const(np.float64(1 / math.sqrt(h * w)), "ortho")], "Xo")
            flat = b.op("Reshape", [X, b.const(_i64([-1, c, h * w, 2]), "spec")], "Xflat")
            kept = b.op("Gather", [flat, b.data(self.freqs, "fourier_freqs")], "Xk", axis=2)
            y = b.op("Reshape", [kept, b.const(_i64([-1, self.m]), "flatm")], "yd")
            return b.op("Cast", [y], "Ax", to=1)

        def adj(b, r):
            rd = b.op("Cast", [r], "rd", to=11)
            pairs = b.op("Reshape", [rd, b.const(_i64([-1, c, k, 2]), "pairs")], "rp")
            padded = b.op("Pad", [pairs, b.const(_i64([0, 0, 1, 0, 0, 0, 0, 0]), "pads")], "rpad")
            Z = b.op("Gather", [padded, b.data(full, "fourier_scatter")], "Z", axis=2)
            Z = b.op("Reshape", [Z, b.const(_i64([-1, c, h, w, 2]), "spec5")], "Z5")
            x = b.op("DFT", [Z], "zh", axis=2, onesided=0, inverse=1)
            x = b.op("DFT", [x], "zhw", axis=3, onesided=0, inverse=1)
            re = b.op("Gather", [x, b.const(np.asarray(0, np.int64), "zero")], "re", axis=4)
            re = b.op("Mul", [re, b.const(np.float64(math.sqrt(h * w)), "unscale")], "reo")
            flat = b.op("Reshape", [re, b.const(_i64([-1, self.n]), "flatn")], "xflat")
            return b.op("Cast", [flat], "ATr", to=1)

        return OnnxForm({}, fwd, adj)

    def preview(self, y):
        """The zero-filled inverse: ``A^T y`` as an image."""
        return self._adjoint(np.asarray(y, np.float32).reshape(-1, self.m)).reshape(-1, *self.in_shape)
