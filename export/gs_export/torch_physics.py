"""One torch adapter of the operator interface (:mod:`gs_onnx.physics`): any operator as a differentiable
torch function, for the methods that train network weights (Deep Decoder, IAGAN) and for torch references.

A dense Gaussian runs as a torch matrix product on the tensor's device (the matrix is the operator's own,
bit for bit); every other operator runs its numpy form inside an ``autograd.Function`` whose backward pass is
the operator's adjoint, so a new operator needs no torch code. ``tests/test_physics.py`` checks the adapter
against the numpy form (values and gradients) for every registered operator.
"""
from __future__ import annotations

import numpy as np
import torch

from gs_onnx.physics import GaussianOperator, IdentityOperator, Operator
from gs_onnx.physics.base import as_operator


class _Apply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, op: Operator, adjoint: bool):
        ctx.op, ctx.adjoint = op, adjoint
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = op.adjoint(a) if adjoint else op.forward(a)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a = np.ascontiguousarray(g.detach().cpu().numpy(), dtype=np.float32)
        out = ctx.op.forward(a) if ctx.adjoint else ctx.op.adjoint(a)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=g.device, dtype=g.dtype), None, None


class TorchOperator:
    """``A`` in torch: ``A(x)`` maps (B, n) or (B, C, H, W) to (B, m), differentiably; ``A.adjoint(y)`` maps
    (B, m) to (B, n); ``A.loss(x, y) = ||A x - y||^2 / m``.

    Parameters
    ----------
    op : an operator (or any object following the operator protocol)
    device, dtype : where a dense Gaussian's matrix lives
    """

    def __init__(self, op, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.op = as_operator(op)
        self.m, self.n = self.op.m, self.op.n
        self.A = None
        if isinstance(self.op, GaussianOperator):
            self.A = torch.tensor(self.op.matrix(), device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if isinstance(self.op, IdentityOperator):
            return x
        if self.A is not None:
            return x @ self.A.T.to(dtype=x.dtype)
        return _Apply.apply(x, self.op, False)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if isinstance(self.op, IdentityOperator):
            return y
        if self.A is not None:
            return y @ self.A.to(dtype=y.dtype)
        return _Apply.apply(y, self.op, True)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self(x) - y
        return (r * r).sum() / r.shape[1]
