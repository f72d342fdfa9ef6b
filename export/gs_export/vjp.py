"""Tracing a block's vector-Jacobian product into a graph the ONNX exporter accepts.

``torch.autograd.grad`` and ``torch.func.vjp`` cannot be exported directly. Instead the VJP of a block is
traced with ``make_fx(tracing_mode="symbolic")`` (symbolic batch axis) and a decomposition table into a
plain aten graph, which the dynamo exporter then turns into ONNX. Two backward ops need decompositions of
our own: ``convolution_backward`` (input gradient only: a transposed convolution for Conv, a convolution
for ConvTranspose) and ``upsample_nearest2d_backward`` (reshape and sum).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx
import torch.nn.functional as F

aten = torch.ops.aten


def _conv_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
                   output_padding, groups, output_mask):
    """Input gradient of a 2-D (transposed) convolution; weight and bias gradients are not needed."""
    if len(weight.shape) != 4:
        raise NotImplementedError("only 2-D convolutions are supported")
    gi = None
    if output_mask[0]:
        if not transposed:
            k = weight.shape[2:]
            hin = input.shape[2:]
            hout = grad_output.shape[2:]
            op = [int(hin[i]) - ((int(hout[i]) - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1)
                  for i in range(2)]
            gi = F.conv_transpose2d(grad_output, weight, None, stride, padding, op, groups, dilation)
        else:
            gi = F.conv2d(grad_output, weight, None, stride, padding, dilation, groups)
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError("weight/bias gradients are not exported")
    return gi, None, None


def _upsample_nearest2d_backward(grad_output, output_size, input_size, scales_h=None, scales_w=None):
    n, c, h, w = input_size
    sh, sw = int(output_size[0]) // int(h), int(output_size[1]) // int(w)
    if sh * h != output_size[0] or sw * w != output_size[1]:
        raise NotImplementedError("only integer nearest-upsampling factors are supported")
    return grad_output.reshape(grad_output.shape[0], c, h, sh, w, sw).sum(dim=(3, 5))


def decompositions() -> dict:
    """The table used for tracing: torch's core aten decompositions plus our two."""
    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = _conv_backward
    table[aten.upsample_nearest2d_backward.default] = _upsample_nearest2d_backward
    return table


def vjp_function(block: nn.Module, n_inputs: int) -> Callable:
    """``f(x_1..x_k, g_1..g_l) -> (dL/dx_1..dL/dx_k)`` for ``block(x_1..x_k) -> (y_1..y_l)`` with
    cotangents ``g``. Unused inputs get zero gradients (never None)."""

    def f(*args):
        xs, gs = args[:n_inputs], args[n_inputs:]
        out, pullback = torch.func.vjp(lambda *a: block(*a), *xs)
        if not isinstance(out, tuple):
            gs_ = gs[0]
        else:
            gs_ = tuple(gs)
        grads = pullback(gs_)
        return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs))

    return f


def trace_vjp(block: nn.Module, example_inputs: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
    """Trace the VJP of ``block`` (in eval mode) at ``example_inputs`` into an aten GraphModule."""
    block.eval()
    for p in block.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        outs = block(*example_inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    cot = [torch.randn_like(o) for o in outs]
    f = vjp_function(block, len(example_inputs))
    return make_fx(f, decomposition_table=decompositions(), tracing_mode="symbolic",
                   _allow_non_fake_inputs=True)(*example_inputs, *cot)
