"""Latent variables of a cut generator: initialisation and packing into flat vectors for scipy.

A cut at c leaves one or more tensors to optimise (BEGAN at c >= 2: the feature map and the skip source).
:class:`LatentLayout` packs them, in the manifest's order and C order, into one float vector per image.
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError

INITS = ("cn01", "zero", "normal", "normal5", "normal10")


class LatentLayout:
    """Packs {name: (B, *shape)} <-> (B, size) float arrays.

    Parameters
    ----------
    shapes : {name: per-sample shape}, in packing order
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.names = tuple(shapes)
        self.shapes = {n: tuple(s) for n, s in shapes.items()}
        self.sizes = {n: int(np.prod(s)) for n, s in self.shapes.items()}
        self.size = sum(self.sizes.values())

    def unpack(self, flat: np.ndarray, dtype=np.float32) -> dict[str, np.ndarray]:
        """(B, size) or (size,) -> {name: (B, *shape)} (a (size,) vector gives B = 1)."""
        flat = np.asarray(flat)
        flat = flat.reshape(-1, self.size)
        out, i = {}, 0
        for n in self.names:
            k = self.sizes[n]
            out[n] = np.ascontiguousarray(flat[:, i:i + k].reshape(-1, *self.shapes[n]), dtype=dtype)
            i += k
        return out

    def pack(self, tensors: dict[str, np.ndarray], dtype=np.float64) -> np.ndarray:
        """{name: (B, *shape)} -> (B, size)."""
        b = tensors[self.names[0]].shape[0]
        return np.concatenate([np.asarray(tensors[n], dtype=dtype).reshape(b, -1) for n in self.names], axis=1)


def init_latent(kind: str, size: int, rng: np.random.Generator, batch: int = 1) -> np.ndarray:
    """Initial latents, float64 (batch, size).

    ``cn01``: N(0, 1) clipped (not resampled) to [-1, 1], the paper's default; ``zero``; ``normal``: N(0,1);
    ``normal5`` / ``normal10``: N(0, 5) / N(0, 10) (the paper's N(0, sigma^2) with that sigma^2).
    """
    if kind == "zero":
        return np.zeros((batch, size))
    z = rng.standard_normal((batch, size))
    if kind == "cn01":
        return np.clip(z, -1.0, 1.0)
    if kind == "normal":
        return z
    if kind == "normal5":
        return z * np.sqrt(5.0)
    if kind == "normal10":
        return z * np.sqrt(10.0)
    raise GSError(f"unknown init {kind!r}: choose one of {', '.join(INITS)}")
