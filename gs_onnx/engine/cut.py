"""The cut generator: blocks c..d-1 of a model, optimised over the inputs of block c.

Generator Surgery (Park et al.) removes the first ``c`` blocks and treats the tensors they would have
produced (for BEGAN past its first layer: the feature map *and* the skip source) as free variables.
"""
from __future__ import annotations

import numpy as np

from . import merge
from .block import Block, run_chain, vjp_chain
from ..errors import GSError
from ..generator.manifest import Manifest
from .runtime import Device, active_provider, create_session

#: Run the tail as one merged forward and one merged VJP session (:mod:`gs_onnx.merge`) unless asked not to.
MERGED_DEFAULT = False


class CutGenerator:
    """``G_c``: {name: (B, *shape) float32} for the cut's inputs -> image (B, C, H, W) in [0, 1].

    Parameters
    ----------
    manifest : a loaded model
    cut : 0 <= cut < depth; 0 is the whole generator over its latent
    device : "auto" | "cpu" | "cuda"
    threads : ONNX Runtime intra-op threads (0: all cores)
    merged : one merged forward and one merged VJP session for the whole tail (default
        :data:`MERGED_DEFAULT`) instead of two sessions per block; the same function, summed in the same
        order up to float32 rounding

    Attributes
    ----------
    inputs : names of the free tensors, in the manifest's order
    shapes : their per-sample shapes
    provider : the execution provider that really runs
    """

    def __init__(self, manifest: Manifest, cut: int, device: Device = "auto", threads: int = 0,
                 merged: bool | None = None):
        spec = manifest.cut(cut)
        self.manifest, self.cut_index, self.device, self.threads = manifest, cut, device, threads
        self._objectives: list = []  # (operator, engine, template objective) built by gs_onnx.solve.objective
        self.inputs: tuple[str, ...] = spec.inputs
        self.shapes = {n: manifest.tensors[n] for n in self.inputs}
        self.size = spec.size(manifest.tensors)
        self.scale, self.shift = manifest.to_unit()
        self.image_shape = manifest.image_shape
        specs = [manifest.blocks[k] for k in range(cut, manifest.depth)]
        if merged is None:
            merged = MERGED_DEFAULT and merge.available()
        self.merged = bool(merged)
        self.blocks: list[Block] = []
        if self.merged:
            fwd, vjp, self._reads = merge.merged_graphs(manifest, specs, self.inputs)
            self._env_names = [n for b in specs for n in b.forward.outputs]
            self._fwd = create_session(fwd, device, threads)
            self._vjp = create_session(vjp, device, threads)
            self.provider = active_provider(self._fwd)
        else:
            self.blocks = [Block(manifest, b, device, threads) for b in specs]
            self.provider = self.blocks[0].provider

    def _check(self, latents: dict[str, np.ndarray]) -> int:
        b = None
        for n in self.inputs:
            if n not in latents:
                raise GSError(f"missing cut input {n!r}")
            a = latents[n]
            if a.shape[1:] != self.shapes[n]:
                raise GSError(f"cut input {n!r} has shape {a.shape[1:]}, expected {self.shapes[n]}")
            if b is not None and a.shape[0] != b:
                raise GSError("cut inputs have different batch sizes")
            b = a.shape[0]
        return int(b)

    def forward(self, latents: dict[str, np.ndarray], keep: bool = False):
        """Image in [0, 1] (unclamped: scale * G + shift), shape (B, C, H, W) float32.

        With ``keep`` also returns the environment of every tensor computed, for :meth:`vjp`.
        """
        self._check(latents)
        env = {n: np.ascontiguousarray(latents[n], dtype=np.float32) for n in self.inputs}
        if self.merged:
            env.update(zip(self._env_names, self._fwd.run(self._env_names, env)))
        else:
            run_chain(self.blocks, env)
        x = env[self.manifest.image]
        x01 = x * np.float32(self.scale) + np.float32(self.shift) if (self.scale, self.shift) != (1.0, 0.0) else x
        return (x01, env) if keep else x01

    def vjp(self, env: dict[str, np.ndarray], grad_image01: np.ndarray) -> dict[str, np.ndarray]:
        """dL/d(cut inputs) given dL/d(image in [0, 1]) and the environment from :meth:`forward`.

        Gradients reaching a tensor from several blocks (BEGAN's skip source) are summed.
        """
        g = np.ascontiguousarray(grad_image01 * np.float32(self.scale), dtype=np.float32)
        if self.merged:
            feed = {n: env[n] for n in self._reads}
            feed[f"grad_{self.manifest.image}"] = g
            outs = self._vjp.run([f"grad_{n}" for n in self.inputs], feed)
            return dict(zip(self.inputs, outs))
        grads = vjp_chain(self.blocks, env, {self.manifest.image: g})
        return {n: grads[n] for n in self.inputs}

    def __call__(self, latents: dict[str, np.ndarray]) -> np.ndarray:
        return self.forward(latents)
