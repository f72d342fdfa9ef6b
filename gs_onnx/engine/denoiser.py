"""A denoiser on ONNX Runtime: the image prior plug-and-play methods call at every iteration.

:class:`Denoiser` runs a verified denoiser folder (:mod:`gs_onnx.generator.denoiser`) on images of any size (padded
by reflection to the graph's multiple and cropped back), in batches, at one noise level per image.

Examples
--------
>>> import numpy as np
>>> from gs_onnx.engine.denoiser import Denoiser
>>> from gs_onnx.generator.denoiser import find_denoiser
>>> d = Denoiser(find_denoiser(), device="cpu")
>>> x = np.full((2, 3, 30, 30), 0.5, np.float32)           # any size: padded to a multiple of 4, cropped back
>>> out = d(x, np.array([0.05, 0.1]))
>>> out.shape, bool(np.abs(out - 0.5).max() < 0.05)        # a flat image stays flat
((2, 3, 30, 30), True)
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError
from ..generator.denoiser import INPUTS, OUTPUTS, DenoiserManifest
from ..generator.manifest import load_graph
from .runtime import Device, active_provider, create_session


class Denoiser:
    """``D(x, sigma)``: x (B, 3, H, W) float32, sigma a number or (B,) -> the denoised images (B, 3, H, W).

    ``batch`` caps the images per session run (activation memory grows with it). ``flip``: the mean of the image's
    and its mirror image's denoising (a self-ensemble over the one symmetry the denoiser was trained with; twice the
    work, steadier inside plug-and-play)."""

    def __init__(self, man: DenoiserManifest, device: Device = "auto", threads: int = 0, batch: int = 16,
                 flip: bool = False):
        self.man = man
        model = load_graph(man, man.graph, INPUTS, OUTPUTS)
        self.session = create_session(model.SerializeToString(), device, threads)
        self.provider = active_provider(self.session)
        self.batch = int(batch)
        self.flip = bool(flip)
        self.calls = 0  # images denoised so far (a report counts them)

    def describe(self) -> dict:
        return {"name": self.man.name, "architecture": self.man.architecture, "sigma_max": self.man.sigma_max,
                "flip": self.flip, "provider": self.provider}

    def __call__(self, x: np.ndarray, sigma) -> np.ndarray:
        if not self.flip:
            return self._run(x, sigma)
        x = np.asarray(x, np.float32)
        s = np.broadcast_to(np.asarray(sigma, np.float32).reshape(-1), (len(x),))
        both = self._run(np.concatenate([x, x[..., ::-1]]), np.concatenate([s, s]))
        return 0.5 * (both[:len(x)] + both[len(x):][..., ::-1])

    def _run(self, x: np.ndarray, sigma) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise GSError(f"the denoiser takes (B, 3, H, W) images, got {x.shape}")
        B, _, H, W = x.shape
        s = np.broadcast_to(np.asarray(sigma, np.float32).reshape(-1), (B,)).astype(np.float32)
        if not np.all(np.isfinite(s)) or s.min() < 0:
            raise GSError("the denoiser's noise level must be finite and >= 0")
        k = self.man.multiple_of
        ph, pw = (-H) % k, (-W) % k
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if min(H, W) > max(ph, pw) else "edge")
        out = np.empty_like(x)
        for lo in range(0, B, self.batch):
            hi = min(B, lo + self.batch)
            out[lo:hi] = self.session.run(list(OUTPUTS), {"x": np.ascontiguousarray(x[lo:hi]),
                                                          "sigma": s[lo:hi].reshape(-1, 1, 1, 1)})[0]
        self.calls += B
        return out[:, :, :H, :W]
