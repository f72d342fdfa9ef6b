"""Image-domain operators: denoising (identity), inpainting (random pixels, a missing box), super-resolution
(area downsampling) and deblurring (Gaussian blur).

Each acts on images of shape (C, H, W) and is rebuilt bit for bit from its description (parameters, and the
seed where it draws anything). Their measurements are images, or pixels of one, so ``gs-measure`` also writes
them as PNGs (:meth:`~gs_onnx.physics.Operator.preview`). Noise: a per-value standard deviation, 0.01 unless
given (``--noise``).

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
>>> A = Mask((3, 64, 64), keep=0.25, seed=0)
>>> A.out_shape, A.m / A.n
((3, 1024), 0.25)
>>> bool(np.array_equal(A(x)[0], x[0].reshape(3, -1)[:, A.pixels]))
True
>>> Downsample((3, 64, 64), factor=4)(x).shape
(1, 3, 16, 16)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GSError
from .base import Operator, Param, _field, check_float, check_int, check_shape, in_shape_of, register

#: Second entries of the SeedSequences of the drawn operators (A's Gaussian blocks use 0, 1, ...;
#: srdct 2**31-2, noise 2**31-1, the fingerprint probe 2**31-4).
MASK_STREAM = 2**31 - 5
BOX_STREAM = 2**31 - 6


def _image_shape(shape, what: str) -> tuple[int, int, int]:
    s = check_shape(shape, f"{what} image shape")
    if len(s) != 3:
        raise GSError(f"{what} needs an image shape (C, H, W), got {list(s)}")
    return s  # type: ignore[return-value]


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), stream])))


def _i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


# ------------------------------------------------------------------------------------------ identity

@register
class IdentityOperator(Operator):
    """``A = I``: denoising (``y = x + noise``), and the generator's representation error without noise.

    Parameters
    ----------
    shape : int or (C, H, W)
        The image shape (an int: flat images of that many values).
    """

    type = "identity"

    def __init__(self, shape):
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (check_int(shape, "identity operator: n", 1),)
        self._set_shapes(shape, shape)

    def _forward(self, x):
        return x.copy()

    def _adjoint(self, y):
        return y.copy()

    def describe(self) -> dict[str, Any]:
        d = {"type": "identity", "m": self.m, "n": self.n, "dtype": "float32"}
        if len(self.in_shape) > 1:
            d["in_shape"] = list(self.in_shape)
        return d

    @classmethod
    def from_description(cls, d, **_):
        shape = in_shape_of(d)
        n = int(np.prod(shape))
        if _field(d, "n", int, n) != n or _field(d, "m", int, n) != n:
            raise GSError(f"identity operator needs m == n == prod(in_shape), got m={d.get('m')!r}, n={d.get('n')!r}")
        return cls(shape if len(shape) > 1 else n)

    @classmethod
    def build(cls, image_shape, seed, **_):
        return cls(image_shape)

    def onnx_form(self):
        from .onnxform import OnnxForm

        return OnnxForm({}, lambda b, x: b.op("Identity", [x], "Ax"), lambda b, r: b.op("Identity", [r], "ATr"))

    def preview(self, y):
        return y.reshape(y.shape[0], *self.in_shape) if len(self.in_shape) == 3 else None


# ------------------------------------------------------------------------------------------ inpainting

class PixelSubset(Operator):
    """Keeps the image values at the sorted flat indices :attr:`idx` (C, H, W order): ``A x = x[idx]``,
    ``A^T y`` puts ``y`` back and zeros elsewhere (``A A^T = I``)."""

    idx: np.ndarray

    def _set_subset(self, image_shape, idx: np.ndarray, out_shape) -> None:
        self.idx = _i64(idx)
        if self.idx.size == 0:
            raise GSError(f"{self.type} operator keeps no pixel")
        self._set_shapes(image_shape, out_shape)

    @property
    def nbytes(self) -> int:
        return 8 * (self.m + self.n)  # the kept indices, and the scatter map of the ONNX adjoint

    def _forward(self, x):
        return x[:, self.idx]

    def _adjoint(self, y):
        out = np.zeros((y.shape[0], self.n), np.float32)
        out[:, self.idx] = y
        return out

    def onnx_form(self):
        """A Gather; the adjoint gathers from a copy of ``r`` with one zero in front (no Scatter op)."""
        from .onnxform import OnnxForm

        full = np.zeros(self.n, np.int64)
        full[self.idx] = np.arange(1, self.m + 1)

        def fwd(b, x):
            return b.op("Gather", [x, b.data(self.idx, "mask_kept")], "Ax", axis=1)

        def adj(b, r):
            padded = b.op("Pad", [r, b.const(_i64([0, 1, 0, 0]), "pads")], "rpad")
            return b.op("Gather", [padded, b.data(full, "mask_scatter")], "ATr", axis=1)

        return OnnxForm({}, fwd, adj)

    def preview(self, y):
        """The image with the missing values at 0 (black)."""
        return self._adjoint(np.asarray(y, np.float32).reshape(-1, self.m)).reshape(-1, *self.in_shape)


@register
class Mask(PixelSubset):
    """Inpainting: keep a random fraction of the pixels (all channels of a pixel together, or values one by one).

    Pixels kept: ``sort(Generator(PCG64(SeedSequence([seed, 2**31 - 5]))).permutation(H * W)[:k])`` with
    ``k = round(keep * H * W)``; every channel keeps the same pixels, so ``out_shape = (C, k)``. With
    ``per_value`` the same draw runs over all ``C * H * W`` values (``out_shape = (k,)``).

    Parameters
    ----------
    image_shape : (C, H, W)
    keep : float in (0, 1]
        Fraction of the pixels (values) kept.
    seed : int
    per_value : bool
        Draw values, not pixels.
    """

    type = "mask"
    params = (Param("keep", float, 0.2, "fraction of the pixels kept, in (0, 1]"),
              Param("per_value", bool, False, "keep values one by one instead of whole pixels"))

    def __init__(self, image_shape, keep: float, seed: int = 0, per_value: bool = False):
        c, h, w = _image_shape(image_shape, "mask")
        self.keep = check_float(keep, "mask: keep", 0.0, 1.0)
        self.seed, self.per_value = check_int(seed, "mask: seed", 0), bool(per_value)
        total = c * h * w if self.per_value else h * w
        k = int(round(self.keep * total))
        if k < 1:
            raise GSError(f"mask: keep {keep} of {total} {'values' if self.per_value else 'pixels'} keeps none")
        chosen = np.sort(_rng(self.seed, MASK_STREAM).permutation(total)[:k])
        if self.per_value:
            self.pixels = None
            self._set_subset((c, h, w), chosen, (k,))
        else:
            self.pixels = chosen
            self._set_subset((c, h, w), (np.arange(c)[:, None] * (h * w) + chosen[None, :]).reshape(-1), (c, k))

    def describe(self):
        return {"type": "mask", "in_shape": list(self.in_shape), "keep": self.keep, "per_value": self.per_value,
                "seed": self.seed, "m": self.m, "n": self.n, "dtype": "float32",
                "rng": f"numpy PCG64, SeedSequence([seed, {MASK_STREAM}]): sorted permutation(H*W or C*H*W)[:k], "
                       "k = round(keep * count)"}

    @classmethod
    def from_description(cls, d, **_):
        return _checked_mn(cls(_field(d, "in_shape", list), _field(d, "keep", float), _field(d, "seed", int),
                               _field(d, "per_value", bool, False)), d)

    @classmethod
    def build(cls, image_shape, seed, *, keep, per_value=False, **_):
        return cls(image_shape, keep, seed, per_value)


@register
class Box(PixelSubset):
    """Inpainting of a missing rectangle: every pixel outside the box is kept (all channels).

    Parameters
    ----------
    image_shape : (C, H, W)
    box : "centre", "random" or (top, left, height, width)
        ``centre``: a box of ``size * H`` x ``size * W`` pixels in the middle; ``random``: the same size placed
        by ``Generator(PCG64(SeedSequence([seed, 2**31 - 6])))`` (``integers(0, H - h + 1)`` for the top, then
        the left); or the box itself in pixels.
    size : float in (0, 1)
        Side of a centred or random box as a fraction of the image side.
    seed : int
    """

    type = "box"
    params = (Param("box", str, "centre", "the missing rectangle: centre | random | TOP,LEFT,HEIGHT,WIDTH in pixels"),
              Param("box_size", float, 0.5, "side of a centre or random box as a fraction of the image side"))

    def __init__(self, image_shape, box="centre", size: float = 0.5, seed: int = 0):
        c, h, w = _image_shape(image_shape, "box")
        self.seed = check_int(seed, "box: seed", 0)
        if isinstance(box, str) and box in ("centre", "center", "random"):
            self.size = check_float(size, "box: box_size", 0.0, 1.0, hi_open=True)
            bh, bw = max(1, int(round(self.size * h))), max(1, int(round(self.size * w)))
            if box == "random":
                rng = _rng(self.seed, BOX_STREAM)
                top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            else:
                top, left = (h - bh) // 2, (w - bw) // 2
            self.placement = "random" if box == "random" else "centre"
        else:
            if isinstance(box, str):
                try:
                    box = [int(v) for v in box.split(",")]
                except ValueError:
                    raise GSError(f"box must be centre, random or TOP,LEFT,HEIGHT,WIDTH, got {box!r}") from None
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise GSError(f"box must be centre, random or TOP,LEFT,HEIGHT,WIDTH, got {box!r}")
            top, left, bh, bw = (check_int(v, f"box {name}", 0) for v, name in zip(box, ("top", "left", "height", "width")))
            if bh < 1 or bw < 1 or top + bh > h or left + bw > w:
                raise GSError(f"box {top},{left},{bh},{bw} is empty or outside the {h}x{w} image")
            self.size, self.placement = None, "given"
        if bh == h and bw == w:
            raise GSError("box covers the whole image: nothing is measured")
        self.box = (top, left, bh, bw)
        keep = np.ones((h, w), bool)
        keep[top:top + bh, left:left + bw] = False
        pixels = np.flatnonzero(keep)
        self.pixels = pixels
        self._set_subset((c, h, w), (np.arange(c)[:, None] * (h * w) + pixels[None, :]).reshape(-1), (c, pixels.size))

    def describe(self):
        return {"type": "box", "in_shape": list(self.in_shape), "box": list(self.box), "placement": self.placement,
                "seed": self.seed, "m": self.m, "n": self.n, "dtype": "float32"}

    @classmethod
    def from_description(cls, d, **_):
        return _checked_mn(cls(_field(d, "in_shape", list), _field(d, "box", list), seed=_field(d, "seed", int, 0)), d)

    @classmethod
    def build(cls, image_shape, seed, *, box="centre", box_size=0.5, **_):
        return cls(image_shape, box, box_size, seed)


def _checked_mn(op: Operator, d: dict) -> Operator:
    for key in ("m", "n"):
        if key in d and d[key] != getattr(op, key):
            raise GSError(f"operator description: {op.type} {key} = {d[key]!r} but its parameters give "
                          f"{getattr(op, key)}")
    return op


# --------------------------------------------------------------------------------------------- blur

def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of std ``sigma`` on ``[-r, r]``, ``r = ceil(3 sigma)`` (float64)."""
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float64) / sigma) ** 2)
    return k / k.sum()


@register
class Blur(Operator):
    """Deblurring: a Gaussian blur of std ``sigma`` pixels, per channel, same-size output.

    The kernel is the normalised 1-D Gaussian on ``[-ceil(3 sigma), ceil(3 sigma)]`` applied along H, then W.
    **Boundary: zeros** (the image is taken as black outside): the matrix is symmetric, so ``A^T = A``.

    Parameters
    ----------
    image_shape : (C, H, W)
    sigma : float in (0, min(H, W) / 4]
    """

    type = "blur"
    params = (Param("sigma", float, 2.0, "std of the Gaussian blur in pixels"),)

    def __init__(self, image_shape, sigma: float):
        c, h, w = _image_shape(image_shape, "blur")
        self.sigma = check_float(sigma, "blur: sigma", 0.0, min(h, w) / 4)
        self.kernel = gaussian_kernel(self.sigma)
        self._set_shapes((c, h, w), (c, h, w))

    def _blur(self, x):
        from scipy.ndimage import correlate1d

        img = x.reshape(x.shape[0], *self.in_shape).astype(np.float64)
        img = correlate1d(img, self.kernel, axis=2, mode="constant")
        img = correlate1d(img, self.kernel, axis=3, mode="constant")
        return img.reshape(x.shape[0], -1).astype(np.float32)

    def _forward(self, x):
        return self._blur(x)

    def _adjoint(self, y):
        return self._blur(y)

    def describe(self):
        return {"type": "blur", "in_shape": list(self.in_shape), "sigma": self.sigma, "radius": len(self.kernel) // 2,
                "boundary": "zero", "m": self.m, "n": self.n, "dtype": "float32"}

    @classmethod
    def from_description(cls, d, **_):
        if d.get("boundary", "zero") != "zero":
            raise GSError(f"unsupported blur boundary {d.get('boundary')!r} (only 'zero')")
        return _checked_mn(cls(_field(d, "in_shape", list), _field(d, "sigma", float)), d)

    @classmethod
    def build(cls, image_shape, seed, *, sigma, **_):
        return cls(image_shape, sigma)

    def onnx_form(self):
        """Two depthwise Convs (along H, then W) with zero padding; the adjoint is the same graph."""
        from .onnxform import OnnxForm

        c, h, w = self.in_shape
        k = self.kernel.astype(np.float32)
        r = len(k) // 2
        kh = np.tile(k.reshape(1, 1, -1, 1), (c, 1, 1, 1))
        kw = np.tile(k.reshape(1, 1, 1, -1), (c, 1, 1, 1))

        def blur(b, x, out):
            img = b.op("Reshape", [x, b.const(_i64([-1, c, h, w]), "imgshape")], "img")
            a = b.op("Conv", [img, b.data(kh, "blur_kh")], "blurh", group=c, pads=[r, 0, r, 0],
                     kernel_shape=[len(k), 1])
            a = b.op("Conv", [a, b.data(kw, "blur_kw")], "blurw", group=c, pads=[0, r, 0, r],
                     kernel_shape=[1, len(k)])
            return b.op("Reshape", [a, b.const(_i64([-1, c * h * w]), "flat")], out)

        return OnnxForm({}, lambda b, x: blur(b, x, "Ax"), lambda b, r_: blur(b, r_, "ATr"))

    def preview(self, y):
        return np.asarray(y, np.float32).reshape(-1, *self.in_shape)


# ------------------------------------------------------------------------------------ super-resolution

@register
class Downsample(Operator):
    """Super-resolution: average over ``factor`` x ``factor`` blocks (area downsampling), optionally after an
    anti-aliasing Gaussian blur of std ``(factor - 1) / 2`` (``kernel="gaussian"``, zero boundary).

    ``A^T`` spreads each low-resolution value over its block divided by ``factor^2``.

    Parameters
    ----------
    image_shape : (C, H, W), with H and W multiples of ``factor``
    factor : int >= 2
    kernel : "area" or "gaussian"
    """

    type = "downsample"
    params = (Param("factor", int, 4, "the integer scale factor (H and W must be multiples of it)"),
              Param("kernel", str, "area", "area (block mean) | gaussian (a Gaussian blur of std (factor - 1) / 2 "
                    "first, anti-aliased)", ("area", "gaussian")))

    def __init__(self, image_shape, factor: int, kernel: str = "area"):
        c, h, w = _image_shape(image_shape, "downsample")
        self.factor = f = check_int(factor, "downsample: factor", 2)
        if h % f or w % f:
            raise GSError(f"downsample: factor {f} does not divide the {h}x{w} image")
        if kernel not in ("area", "gaussian"):
            raise GSError(f"downsample: kernel must be area or gaussian, got {kernel!r}")
        self.kernel = kernel
        self.blur = Blur((c, h, w), (f - 1) / 2) if kernel == "gaussian" else None
        self._set_shapes((c, h, w), (c, h // f, w // f))

    @property
    def block_period(self) -> int:
        """The period of the blocks the measurements average: a recovery that draws them (TV's staircase) changes
        faster across multiples of it (:func:`gs_onnx.metrics.seam` with this period; gs-recover reports it)."""
        return self.factor

    def _area(self, x):
        c, h, w = self.in_shape
        f = self.factor
        return x.reshape(x.shape[0], c, h // f, f, w // f, f).mean(axis=(3, 5), dtype=np.float64) \
            .astype(np.float32).reshape(x.shape[0], -1)

    def _area_t(self, y):
        c, h, w = self.in_shape
        f = self.factor
        small = y.reshape(y.shape[0], c, h // f, 1, w // f, 1) / np.float32(f * f)
        return np.broadcast_to(small, (y.shape[0], c, h // f, f, w // f, f)).reshape(y.shape[0], -1).astype(np.float32)

    def _forward(self, x):
        return self._area(self.blur._forward(x) if self.blur else x)

    def _adjoint(self, y):
        x = self._area_t(y)
        return self.blur._adjoint(x) if self.blur else x

    def describe(self):
        return {"type": "downsample", "in_shape": list(self.in_shape), "factor": self.factor, "kernel": self.kernel,
                **({"blur_sigma": self.blur.sigma, "boundary": "zero"} if self.blur else {}),
                "m": self.m, "n": self.n, "dtype": "float32"}

    @classmethod
    def from_description(cls, d, **_):
        return _checked_mn(cls(_field(d, "in_shape", list), _field(d, "factor", int), _field(d, "kernel", str, "area")), d)

    @classmethod
    def build(cls, image_shape, seed, *, factor, kernel="area", **_):
        return cls(image_shape, factor, kernel)

    def onnx_form(self):
        """ReduceMean over the blocks; the adjoint expands each value over its block (Expand, no Resize)."""
        from .onnxform import OnnxForm

        c, h, w = self.in_shape
        f = self.factor
        blur = self.blur.onnx_form() if self.blur else None

        def fwd(b, x):
            if blur:
                x = blur.forward(b, x)
            six = b.op("Reshape", [x, b.const(_i64([-1, c, h // f, f, w // f, f]), "blocks")], "blk")
            mean = b.op("ReduceMean", [six, b.const(_i64([3, 5]), "blockaxes")], "mean", keepdims=0)
            return b.op("Reshape", [mean, b.const(_i64([-1, self.m]), "flatm")], "Ax")

        def adj(b, r):
            six = b.op("Reshape", [r, b.const(_i64([-1, c, h // f, 1, w // f, 1]), "blocks1")], "r6")
            big = b.op("Expand", [six, b.const(_i64([1, c, h // f, f, w // f, f]), "expand")], "rexp")
            x = b.op("Reshape", [big, b.const(_i64([-1, self.n]), "flatn")], "rflat")
            x = b.op("Mul", [x, b.const(np.float32(1.0 / (f * f)), "invf2")], "ATr0")
            return blur.adjoint(b, x) if blur else x

        return OnnxForm({}, fwd, adj)

    def preview(self, y):
        """The low-resolution image, enlarged by ``factor`` (nearest) to sit beside the recovery."""
        c, h, w = self.in_shape
        f = self.factor
        small = np.asarray(y, np.float32).reshape(-1, c, h // f, w // f)
        return small.repeat(f, axis=2).repeat(f, axis=3)
