"""The torch reference of GS recovery: the same objective, operator, noise, init and restart rule as the
runtime, with the cut generator and A evaluated in torch (CPU or CUDA) and autograd for the gradient.

It plugs into :func:`gs_onnx.solve.restart.recover` through its ``objective`` argument, so the optimiser code is
literally the same; tests use it for parity (objective, gradient, PSNR) and benchmarks for speed.
"""
from __future__ import annotations

import numpy as np
import torch

from gs_onnx.generator.latent import LatentLayout
from gs_onnx.physics import GaussianOperator, IdentityOperator, Operator

from .architectures import Generator
from .torch_physics import TorchOperator


class TorchObjective:
    """f(z) = ||A G_c(z) - y||^2 / m and df/dz in torch, for one measurement vector.

    Parameters
    ----------
    gen : torch generator (eval mode) of the model; ``cut`` : blocks removed
    op : a gs_onnx operator (a Gaussian's dense matrix is moved to ``device``; another operator runs its numpy
        form through :class:`gs_export.torch_physics.TorchOperator`, or its dense matrix for a float64
        reference; the identity stays implicit)
    y : (m,) float32 measurements
    to_unit : (scale, shift) mapping the generator's output range to [0, 1] (``Manifest.to_unit()``)
    """

    def __init__(self, gen: Generator, cut: int, op: Operator, y: np.ndarray, to_unit: tuple[float, float],
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.gen = gen.eval().to(device=device, dtype=dtype)
        for p in self.gen.parameters():
            p.requires_grad_(False)
        shapes = gen.shapes() if next(gen.parameters()).device.type == "cpu" else None
        if shapes is None:
            with torch.no_grad():
                env = self.gen.run({"z": torch.zeros((1, *gen.latent_shape), device=device, dtype=dtype)})
            shapes = {k: tuple(v.shape[1:]) for k, v in env.items()}
        self.cut, self.device, self.dtype = cut, torch.device(device), dtype
        self.layout = LatentLayout({n: shapes[n] for n in gen.cut_inputs(cut)})
        # The torch adapter (a Gaussian as a torch matrix, the identity implicit, another operator as its own numpy
        # form: a structured operator is never densified, a 128 px subsampled DCT would be 1.6 GB); a float64
        # reference of another operator takes its dense matrix, so that it stays float64.
        self.A = None
        if dtype == torch.float64 and not isinstance(op, (GaussianOperator, IdentityOperator)):
            self.A = torch.tensor(op.matrix(), device=device, dtype=dtype)
        self.op = TorchOperator(op, device=device, dtype=dtype)
        self.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(-1), device=device, dtype=dtype)
        self.m = self.y.numel()
        self.scale, self.shift = to_unit
        self.evaluations = 0

    def with_measurements(self, y: np.ndarray) -> "TorchObjective":
        """The same objective (generator and A shared, not copied) for other measurements ``y``."""
        new = object.__new__(TorchObjective)
        new.__dict__.update(self.__dict__)
        new.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(-1), device=self.device, dtype=self.dtype)
        new.evaluations = 0
        return new

    def _x01(self, zs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.gen.run(dict(zs), start=self.cut)["x"] * self.scale + self.shift

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        return self.op(x) if self.A is None else x @ self.A.T

    def _tensors(self, z: np.ndarray, grad: bool) -> dict[str, torch.Tensor]:
        return {n: torch.as_tensor(v, device=self.device, dtype=self.dtype).requires_grad_(grad)
                for n, v in self.layout.unpack(z).items()}

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self.value_and_grad_batch(np.asarray(z).reshape(1, -1))
        return float(f[0]), g[0]

    def value_and_grad_batch(self, Z: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """f (K,) and df/dz (K, size) for K latents in one batch (as ``gs_onnx.solve.objective.Objective``)."""
        Z = np.atleast_2d(Z)
        self.evaluations += Z.shape[0]
        zs = self._tensors(Z, True)
        yy = self.y if y is None else torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(Z.shape[0], -1),
                                                      device=self.device, dtype=self.dtype)
        r = self._apply(self._x01(zs)) - yy
        f = (r * r).sum(dim=1) / self.m
        grads = torch.autograd.grad(f.sum(), list(zs.values()))
        g = torch.cat([t.reshape(t.shape[0], -1) for t in grads], dim=1).double().cpu().numpy()
        return f.detach().double().cpu().numpy(), g

    @torch.no_grad()
    def value(self, z: np.ndarray) -> float:
        r = self._apply(self._x01(self._tensors(z, False))) - self.y
        return float((r * r).sum() / self.m)

    @torch.no_grad()
    def image(self, latents: dict[str, np.ndarray]) -> np.ndarray:
        zs = {n: torch.as_tensor(v, device=self.device, dtype=self.dtype) for n, v in latents.items()}
        return self._x01(zs).float().cpu().numpy()

    @torch.no_grad()
    def measurement_error(self, latents: dict[str, np.ndarray]) -> float:
        zs = {n: torch.as_tensor(v, device=self.device, dtype=self.dtype) for n, v in latents.items()}
        r = self._apply(self._x01(zs).clamp(0, 1)) - self.y
        return float(torch.linalg.vector_norm(r.double()))
