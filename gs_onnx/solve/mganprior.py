"""mGANprior (Gu et al., CVPR 2020) from the same per-block graphs: N latent codes composed at a cut.

The head (blocks ``0..c-1``) maps N codes ``z_1..z_N`` to N feature maps ``F_i`` at the cut; they are
weighted per channel and summed, ``F = sum_i alpha_i[:, None, None] * F_i``, and the tail (blocks
``c..d-1``) maps ``F`` to the image. Codes and weights are optimised together, by the same scipy
L-BFGS-B, restarts and winner rule as Generator Surgery (:func:`gs_onnx.solve.restart.recover`).

A cut whose inputs include more than the head's last output (BEGAN at c >= 2 also takes the skip
source ``h1``) leaves those extra inputs free, one tensor per image, as the paper's code does.
Gradients come from the exported VJP graphs: the head's give dL/dz_i from dL/dF_i = alpha_i * dL/dF,
and dL/dalpha_i[k] = sum over the spatial axes of dL/dF[k] * F_i[k].
"""
from __future__ import annotations

import numpy as np

from ..engine.block import Block, run_chain, vjp_chain
from ..engine.cut import CutGenerator
from ..errors import GSError
from ..generator.latent import LatentLayout
from ..generator.manifest import Manifest
from ..physics.datafit import data_fit, data_term
from ..physics import Operator
from ..physics.base import as_operator
from ..engine.runtime import Device

#: Number of codes N by architecture, from the paper's code (10 for DCGAN, 20 for BEGAN and the VAE).
DEFAULT_CODES = {"dcgan": 10, "began": 20, "vae": 20}


def default_codes(manifest: Manifest) -> int:
    """N for ``manifest``'s architecture (20 for an unknown one)."""
    return DEFAULT_CODES.get(manifest.architecture, 20)


class MultiCodeObjective:
    """f(codes, alpha, free) = ||A G_c(sum_i alpha_i * H_c(z_i), free) - y||^2 / m and its gradient.

    Parameters
    ----------
    manifest : a loaded model
    cut : 1 <= cut < depth, the layer where the codes are composed
    op : measurement operator, ``op.n`` = the model's C*H*W
    y : (m,) float32 measurements of one image
    codes : N >= 1
    device, threads : as for :class:`gs_onnx.engine.cut.CutGenerator`

    Attributes
    ----------
    layout : packs ``codes`` (N, *latent), ``alpha`` (N, channels of the composed tensor) and any free
        cut inputs into one float64 vector for scipy; ``composed`` names the composed tensor.

    Has the methods :func:`gs_onnx.solve.restart.recover` needs (``value_and_grad``, ``value``, ``image``,
    ``measurement_error``, ``evaluations``), so it runs with ``recover(None, None, y, objective=...)``.
    """

    def __init__(self, manifest: Manifest, cut: int, op: Operator, y: np.ndarray, codes: int,
                 device: Device = "auto", threads: int = 0):
        if not 1 <= cut < manifest.depth:
            raise GSError(f"mganprior composes codes inside the generator: cut must be in 1..{manifest.depth - 1},"
                          f" got {cut}")
        if codes < 1:
            raise GSError(f"mganprior needs at least one code, got {codes}")
        self.tail = CutGenerator(manifest, cut, device, threads)
        op = as_operator(op, manifest.image_shape)
        if op.n != manifest.n:
            raise GSError(f"operator has n = {op.n} but model {manifest.name} has n = {manifest.n}")
        self.head = [Block(manifest, manifest.blocks[k], device, threads) for k in range(cut)]
        self.latent_names = manifest.cut(0).inputs
        self.composed = self.head[-1].outputs[0]
        if self.composed not in self.tail.inputs:
            raise GSError(f"cut {cut} does not take {self.composed!r}, the output of block {cut - 1}")
        fshape = manifest.tensors[self.composed]
        self.channels = int(fshape[0])
        self._alpha_shape = (codes, self.channels) + (1,) * (len(fshape) - 1)
        self.free = tuple(n for n in self.tail.inputs if n != self.composed)
        shapes: dict[str, tuple[int, ...]] = {}
        for n in self.latent_names:
            shapes["codes" if len(self.latent_names) == 1 else f"codes.{n}"] = (codes, *manifest.tensors[n])
        shapes["alpha"] = (codes, self.channels)
        shapes.update({n: manifest.tensors[n] for n in self.free})
        self.layout = LatentLayout(shapes)
        self.codes, self.cut, self.manifest, self.op = codes, cut, manifest, op
        self.y = np.asarray(y, dtype=np.float32).reshape(1, -1)
        self.m = self.y.shape[1]
        if self.m != op.m:
            raise GSError(f"measurements have {self.m} values but the operator has m = {op.m}")
        self.evaluations = 0
        self.w: np.ndarray | None = None
        self.held_out: np.ndarray | None = None
        self.provider = self.tail.provider

    def with_measurements(self, y: np.ndarray, w: np.ndarray | None = None) -> "MultiCodeObjective":
        """The same objective (sessions and operator shared, not copied) for other measurements ``y`` ((m,))
        and row weights ``w`` (1 fitted, 0 held out; default every row fitted)."""
        new = object.__new__(MultiCodeObjective)
        new.__dict__.update(self.__dict__)
        new.y = np.asarray(y, dtype=np.float32).reshape(1, -1)
        if new.y.shape[1] != self.m:
            raise GSError(f"measurements have {new.y.shape[1]} values, the objective {self.m}")
        new.w = None if w is None else np.asarray(w, dtype=np.float32).reshape(1, -1)
        if new.w is not None and new.w.shape != new.y.shape:
            raise GSError(f"row weights have {new.w.shape[1]} values for {self.m} measurements")
        new.evaluations = 0
        new.held_out = None
        return new

    def _code_key(self, n: str) -> str:
        return "codes" if len(self.latent_names) == 1 else f"codes.{n}"

    def _compose(self, v: dict[str, np.ndarray]):
        """Head on the N codes of one image (batch of 1 in ``v``) -> (head env, alpha, tail inputs)."""
        env = {n: np.ascontiguousarray(v[self._code_key(n)][0], dtype=np.float32) for n in self.latent_names}
        run_chain(self.head, env)
        alpha = v["alpha"][0].reshape(self._alpha_shape).astype(np.float32)
        feat = (alpha * env[self.composed]).sum(axis=0, keepdims=True, dtype=np.float32)
        tail_in = {self.composed: feat, **{n: v[n] for n in self.free}}
        return env, alpha, tail_in

    def image(self, latents: dict[str, np.ndarray]) -> np.ndarray:
        """The image in [0, 1] (unclamped), (1, C, H, W) float32, for latents with a batch axis of 1."""
        return self.tail.forward(self._compose(latents)[2])

    def residual(self, x01: np.ndarray) -> np.ndarray:
        return self.op.forward(x01.reshape(x01.shape[0], -1)) - self.y

    def value(self, z: np.ndarray) -> float:
        return float(data_term(self.residual(self.image(self.layout.unpack(z))), self.w)[0][0])

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """f and df/d(packed codes, alpha, free) for z float64 (size,)."""
        self.evaluations += 1
        v = self.layout.unpack(z)
        henv, alpha, tail_in = self._compose(v)
        x01, tenv = self.tail.forward(tail_in, keep=True)
        f, self.held_out, gx = data_fit(self.op, x01.reshape(1, -1), self.y, self.w)
        f = float(f[0])
        gx = gx.reshape(x01.shape)
        tg = self.tail.vjp(tenv, gx)
        gfeat = tg[self.composed]                                        # (1, C, H, W)
        feats = henv[self.composed]                                      # (N, C, H, W)
        axes = tuple(range(2, feats.ndim))
        galpha = (feats * gfeat).sum(axis=axes, dtype=np.float64) if axes else feats * gfeat
        hg = vjp_chain(self.head, henv, {self.composed: np.ascontiguousarray(alpha * gfeat, dtype=np.float32)})
        grads = {self._code_key(n): hg[n][None] for n in self.latent_names}
        grads["alpha"] = np.asarray(galpha).reshape(1, self.codes, self.channels)
        grads.update({n: tg[n] for n in self.free})
        return f, self.layout.pack(grads).ravel()

    def measurement_error(self, latents: dict[str, np.ndarray]) -> float:
        """||A clamp(x, 0, 1) - y||_2 of the composed image: the restart-selection criterion."""
        x = np.clip(self.image(latents), 0.0, 1.0)
        return float(np.linalg.norm(self.residual(x).astype(np.float64)))
