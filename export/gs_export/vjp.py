"""Tracing a block's forward pass and vector-Jacobian product into graphs the ONNX exporter accepts.

``torch.autograd.grad`` and ``torch.func.vjp`` cannot be exported directly. Instead the block's forward
and VJP are traced together with ``make_fx(tracing_mode="symbolic")`` (symbolic batch axis) and a
decomposition table into one plain aten graph, which :func:`partition` splits into a forward graph that
also returns the values the backward pass needs and a VJP graph that reads them (no forward recomputation);
the dynamo exporter then turns both into ONNX. Two backward ops need decompositions of our own:
``convolution_backward`` (input gradient only: a transposed convolution for Conv -- a convolution with the
flipped kernel where the stride is 1 --, a convolution for ConvTranspose) and ``upsample_nearest2d_backward`` (reshape and sum).
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
            pad = [dilation[i] * (k[i] - 1) - padding[i] for i in range(2)]
            if list(stride) == [1, 1] and groups == 1 and min(pad) >= 0 and op == [0, 0]:
                # Stride 1: the transposed convolution is a plain convolution with the kernel flipped and
                # its channel axes swapped. ONNX Runtime's CPU Conv is about 1.8x faster than its
                # ConvTranspose for BEGAN's 3x3 layers. The graph flips the forward graph's own kernel
                # (stored once, shared), and ORT folds the flip at session start.
                gi = F.conv2d(grad_output, weight.flip(2, 3).transpose(0, 1), None, 1, pad, dilation, 1)
            else:
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


def joint_function(block: nn.Module, n_inputs: int) -> Callable:
    """``f(x_1..x_k, g_1..g_l) -> (dL/dx_1..dL/dx_k, y_1..y_l)``: the VJP and the block's own outputs,
    traced together so that :func:`partition` can split them at the tensors the backward pass needs."""

    def f(*args):
        xs, gs = args[:n_inputs], args[n_inputs:]
        out, pullback = torch.func.vjp(lambda *a: block(*a), *xs)
        grads = pullback(tuple(gs) if isinstance(out, tuple) else gs[0])
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs)) + tuple(outs)

    return f


def trace_joint(block: nn.Module, example_inputs: Sequence[torch.Tensor]) -> tuple[torch.fx.GraphModule, int]:
    """Trace :func:`joint_function` of ``block`` (eval mode); returns (graph, number of block outputs)."""
    block.eval()
    for p in block.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        outs = block(*example_inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    cot = [torch.randn_like(o) for o in outs]
    gm = make_fx(joint_function(block, len(example_inputs)), decomposition_table=decompositions(),
                 tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example_inputs, *cot)
    return gm, len(outs)


def partition(gm: torch.fx.GraphModule, n_inputs: int, n_outputs: int):
    """Split a joint graph into a forward graph that also returns what the backward pass needs, and a
    backward graph that takes it instead of recomputing the forward.

    Nodes reachable from the cotangent placeholders are *tangent*; the others are *primal*. A primal tensor
    that depends on the block inputs and feeds a tangent node is *saved* (a ReLU mask, an ELU's exp, a
    Tanh's 1 - y^2): the forward graph outputs it, the backward graph reads it. Primal nodes that depend on
    no input (weights and constants) and non-tensor values (symbolic sizes) are copied into the backward
    graph. Returns ``(forward, backward, saved_count)``:

    * forward: ``(x_1..x_k) -> (y_1..y_l, s_1..s_S)``
    * backward: ``(x_1..x_k, s_1..s_S, g_1..g_l) -> (dL/dx_1..dL/dx_k)`` (the x only for shapes, if at all)
    """
    nodes = list(gm.graph.nodes)
    ph = [n for n in nodes if n.op == "placeholder"]
    xs_ph, gs_ph = ph[:n_inputs], ph[n_inputs:]
    results = list(nodes[-1].args[0])
    grads, outs = results[:n_inputs], results[n_inputs:]
    assert len(outs) == n_outputs
    tangent, on_x = set(gs_ph), set(xs_ph)
    for n in nodes:
        ins = n.all_input_nodes
        if n.op != "placeholder" and any(a in tangent for a in ins):
            tangent.add(n)
        if n.op != "placeholder" and any(a in on_x for a in ins):
            on_x.add(n)

    def is_tensor(n) -> bool:
        return isinstance(n.meta.get("val"), torch.Tensor)

    saved: list = []
    for n in nodes:
        if n in tangent and n.op != "output":
            for a in n.all_input_nodes:
                if a not in tangent and a in on_x and is_tensor(a) and a.op != "placeholder" and a not in saved:
                    saved.append(a)
    # a saved tensor that is also a block output is read under the output's name (no copy)
    saved = [s for s in saved if s not in outs]

    def build(inputs: list, results: list, stop: set) -> torch.fx.GraphModule:
        g = torch.fx.Graph()
        env: dict = {}
        for n in inputs:
            env[n] = g.placeholder(n.name)
            env[n].meta = dict(n.meta)

        def copy(n):
            if n in env:
                return env[n]
            if n in stop:
                raise RuntimeError(f"partition: {n} is needed but neither computed nor an input")
            for a in n.all_input_nodes:
                copy(a)
            env[n] = g.node_copy(n, lambda a: env[a])
            return env[n]

        g.output(tuple(copy(r) for r in results))
        g.eliminate_dead_code()
        return torch.fx.GraphModule(gm, g)

    fwd = build(xs_ph, list(outs) + saved, set(gs_ph))
    out_saved = [o for o in outs if any(u in tangent for u in o.users)]
    bwd = build(xs_ph + saved + out_saved + gs_ph, grads, set())
    # the backward graph's inputs: x (shapes only), saved, block outputs it reads, cotangents; drop unused x
    return fwd, bwd, len(saved), [outs.index(o) for o in out_saved]
