"""The Generator Surgery objective composed into ONNX graphs, built in memory from a model's block graphs.

The **objective graph** computes, for B rows at once (restarts, images, or both)::

    packed_z (B, size) -> cut inputs -> tail forward -> x01 = scale * G + shift   (unclamped)
      -> A x01 (the operator's forward as ONNX nodes) -> r = A x01 - y
      -> f = sum_j w_j r_j^2 / sum_j w_j             (float64; w = 1 on the rows fitted, 0 on held-out rows)
      -> grad = VJP_tail(scale * A^T (2 w r / sum_j w_j)) packed (B, size)
      -> f_held = sum_j (1 - w_j) r_j^2 / max(sum_j (1 - w_j), 1)

Inputs: ``packed_z`` (B, size) float32, ``y`` (B, m) float32, ``w`` (B, m) float32 and the operator's run-time
inputs (the dense Gaussian ``A`` (m, n) float32). Outputs: ``f`` (B,) float64, ``grad`` (B, size) float32,
``f_held`` (B,) float64. With ``w = 1`` everywhere, ``f = ||A G_c(z) - y||^2 / m``, the paper's objective.

The **image graph** maps the same inputs to ``x01`` (B, C, H, W) float32 (unclamped), ``err`` (B,) float64 =
``||A clamp(x01, 0, 1) - y||`` (the restart-selection criterion) and ``err_held`` (B,) float64, the same norm
over the held-out rows only.

Operators without an ONNX form (or kept on the host by choice) use the **split graphs** instead: ``forward``
maps ``packed_z`` to ``x01`` and every value the VJP reads; ``vjp`` maps those plus ``grad_x01`` (dL/dx01) to
``grad`` (B, size). The host applies the operator in between.

``packed_z`` holds the cut's inputs in the manifest's order, each flattened in C order (as
:class:`gs_onnx.generator.latent.LatentLayout`). Every graph has a dynamic batch axis unless built for a fixed batch
(``batch=B``: static shapes, which CUDA graphs need).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..errors import GSError
from ..physics.onnxform import (DOUBLE, FLOAT, INT64, IR_VERSION, Builder, OnnxForm, dedupe_initializers,  # noqa: F401
                                finish_model, onnx_modules, prune, tensor_info)
from ..generator.manifest import Manifest
from . import merge

#: Names of the composed graphs' inputs and outputs (part of the format; docs/manifest.md).
Z, Y, W, F, GRAD, F_HELD, X01, ERR, ERR_HELD, GRAD_X01 = (
    "packed_z", "y", "w", "f", "grad", "f_held", "x01", "err", "err_held", "grad_x01")
RESERVED = (Z, Y, W, F, GRAD, F_HELD, X01, ERR, ERR_HELD, GRAD_X01)


@dataclasses.dataclass
class Tail:
    """The merged tail of a cut generator, ready to be spliced into a composed graph."""

    manifest: Manifest
    cut: int
    inputs: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    fwd: object           #: ModelProto: cut inputs -> every block output and saved value
    vjp: object           #: ModelProto: reads + grad_<image> -> grad_<input> for every cut input
    reads: list[str]      #: names the VJP graph reads from the forward environment

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes.values()))


def load_tail(manifest: Manifest, cut: int) -> Tail:
    """The merged forward and VJP graphs of blocks ``cut..depth-1`` (weights loaded, checksums already verified
    by :func:`gs_onnx.generator.manifest.load_manifest`)."""
    spec = manifest.cut(cut)
    blocks = [manifest.blocks[k] for k in range(cut, manifest.depth)]
    fwd, vjp, reads = merge.merged_models(manifest, blocks, spec.inputs)
    taken = set(manifest.tensors) | {n for b in blocks for n in b.forward.outputs}
    clash = sorted(taken & set(RESERVED))
    if clash:
        raise GSError(f"model {manifest.name} names a tensor {clash[0]!r}, which the composed engine reserves")
    return Tail(manifest, cut, tuple(spec.inputs), {n: tuple(manifest.tensors[n]) for n in spec.inputs},
                fwd, vjp, reads)


def _copy_nodes(model) -> tuple[list, list]:
    onnx, _, _ = onnx_modules()
    nodes = []
    for n in model.graph.node:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        nodes.append(c)
    inits = []
    for t in model.graph.initializer:
        c = onnx.TensorProto()
        c.CopyFrom(t)
        inits.append(c)
    return nodes, inits


def _unpack(b: Builder, tail: Tail, batch) -> None:
    """packed_z -> the cut inputs, named as the tail's graphs expect."""
    sizes = [int(np.prod(tail.shapes[n])) for n in tail.inputs]
    lead = -1 if batch is None else int(batch)
    if len(sizes) == 1:
        parts = [Z]
    else:
        parts = b.op("Split", [Z, b.const(np.asarray(sizes, np.int64), "sizes")], "part", outputs=len(sizes), axis=1)
    for name, part in zip(tail.inputs, parts):
        shape = b.const(np.asarray([lead, *tail.shapes[name]], np.int64), "shape")
        b.op("Reshape", [part, shape], outputs=[name])


def _pack(b: Builder, tail: Tail, grads: Sequence[str], batch) -> None:
    """grad_<input> tensors -> ``grad`` (B, size)."""
    lead = -1 if batch is None else int(batch)
    flat = []
    for name, g in zip(tail.inputs, grads):
        k = int(np.prod(tail.shapes[name]))
        flat.append(b.op("Reshape", [g, b.const(np.asarray([lead, k], np.int64), "shape")], "gflat"))
    if len(flat) == 1:
        b.op("Identity", flat, outputs=[GRAD])
    else:
        b.op("Concat", flat, outputs=[GRAD], axis=1)


def _to_unit(b: Builder, tail: Tail, out: str) -> None:
    scale, shift = tail.manifest.to_unit()
    image = tail.manifest.image
    if (scale, shift) == (1.0, 0.0):
        b.op("Identity", [image], outputs=[out])
    else:
        t = b.op("Mul", [image, b.const(np.float32(scale), "scale")], "scaled")
        b.op("Add", [t, b.const(np.float32(shift), "shift")], outputs=[out])


def _grad_image(b: Builder, tail: Tail, gx01: str) -> None:
    """dL/dx01 -> dL/d(image) = scale * dL/dx01, named as the tail's VJP graph reads it."""
    scale, _ = tail.manifest.to_unit()
    name = f"grad_{tail.manifest.image}"
    if scale == 1.0:
        b.op("Identity", [gx01], outputs=[name])
    else:
        b.op("Mul", [gx01, b.const(np.float32(scale), "scale")], outputs=[name])


def _weighted_losses(b: Builder, r: str) -> tuple[str, str]:
    """(f, f_held) in float64 from the residual r (B, m) and the row weights w; returns the float32 factor
    2 w / sum(w) (B, m) for the gradient."""
    one = b.const(np.float64(1.0), "one")
    axes = b.const(np.asarray([1], np.int64), "axes")
    rd = b.op("Cast", [r], "rd", to=DOUBLE)
    wd = b.op("Cast", [W], "wd", to=DOUBLE)
    r2 = b.op("Mul", [rd, rd], "r2")
    sw = b.op("ReduceSum", [wd, axes], "sw", keepdims=1)                                  # (B, 1)
    sw_safe = b.op("Max", [sw, one], "sw_safe")
    fit = b.op("ReduceSum", [b.op("Mul", [r2, wd], "wr2"), axes], "fit", keepdims=0)        # (B,)
    b.op("Div", [fit, b.op("Squeeze", [sw_safe, axes], "sws")], outputs=[F])
    hold = b.op("Sub", [one, wd], "hold")
    sh = b.op("Max", [b.op("ReduceSum", [hold, axes], "sh", keepdims=0), one], "sh_safe")
    held = b.op("ReduceSum", [b.op("Mul", [r2, hold], "hr2"), axes], "held", keepdims=0)
    b.op("Div", [held, sh], outputs=[F_HELD])
    factor = b.op("Div", [b.op("Mul", [wd, b.const(np.float64(2.0), "two")], "w2"), sw_safe], "factor")
    return b.op("Cast", [factor], "factor32", to=FLOAT)


def _dims(batch) -> str | int:
    return "batch" if batch is None else int(batch)


def objective_builder(tail: Tail, form: OnnxForm, *, batch: int | None = None, b: Builder | None = None):
    """(builder, initializers): the nodes of the objective graph, from ``packed_z``, ``y``, ``w`` and the
    operator's inputs to ``f``, ``grad`` and ``f_held`` (the module docstring), not yet made a model (the
    recovery graph instantiates them inside its loop)."""
    man = tail.manifest
    n = man.n
    b = Builder() if b is None else b
    _unpack(b, tail, batch)
    fnodes, finits = _copy_nodes(tail.fwd)
    b.nodes += fnodes
    _to_unit(b, tail, "gs/x01")
    xf = b.op("Reshape", ["gs/x01", b.const(np.asarray([-1, n], np.int64), "shape")], "xflat")
    r = b.op("Sub", [form.forward(b, xf), Y], "r")
    factor = _weighted_losses(b, r)
    gr = b.op("Mul", [r, factor], "gr")
    gx = form.adjoint(b, gr)
    c, h, w = man.image_shape
    gx01 = b.op("Reshape", [gx, b.const(np.asarray([-1, c, h, w], np.int64), "shape")], "gx01")
    _grad_image(b, tail, gx01)
    vnodes, vinits = _copy_nodes(tail.vjp)
    b.nodes += vnodes
    _pack(b, tail, [f"grad_{n_}" for n_ in tail.inputs], batch)
    return b, finits + vinits


def image_builder(tail: Tail, form: OnnxForm, *, batch: int | None = None, b: Builder | None = None):
    """(builder, initializers): the nodes of the image graph, from ``packed_z``, ``y``, ``w`` and the operator's
    inputs to ``x01``, ``err`` and ``err_held`` (the module docstring)."""
    man = tail.manifest
    n = man.n
    b = Builder() if b is None else b
    _unpack(b, tail, batch)
    fnodes, finits = _copy_nodes(tail.fwd)
    b.nodes += fnodes
    _to_unit(b, tail, X01)
    clamped = b.op("Clip", [X01, b.const(np.float32(0.0), "zero"), b.const(np.float32(1.0), "one")], "clamped")
    xf = b.op("Reshape", [clamped, b.const(np.asarray([-1, n], np.int64), "shape")], "xflat")
    r = b.op("Sub", [form.forward(b, xf), Y], "r")
    axes = b.const(np.asarray([1], np.int64), "axes")
    rd = b.op("Cast", [r], "rd", to=DOUBLE)
    r2 = b.op("Mul", [rd, rd], "r2")
    b.op("Sqrt", [b.op("ReduceSum", [r2, axes], "ss", keepdims=0)], outputs=[ERR])
    hold = b.op("Sub", [b.const(np.float64(1.0), "one"), b.op("Cast", [W], "wd", to=DOUBLE)], "hold")
    b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [r2, hold], "hr2"), axes], "hs", keepdims=0)], outputs=[ERR_HELD])
    return b, finits


def objective_models(tail: Tail, form: OnnxForm, m: int, *, batch: int | None = None):
    """(objective ModelProto, image ModelProto) for the cut generator ``tail`` and an operator in ONNX form
    with ``m`` measurements. See the module docstring for the inputs and outputs."""
    man = tail.manifest
    B = _dims(batch)
    op_inputs = [tensor_info(k, FLOAT, shape) for k, (shape, _) in form.inputs.items()]
    common_in = [tensor_info(Z, FLOAT, [B, tail.size]), tensor_info(Y, FLOAT, [B, m]),
                 tensor_info(W, FLOAT, [B, m])] + op_inputs
    c, h, w = man.image_shape
    b, inits = objective_builder(tail, form, batch=batch)
    obj = finish_model(b, "gs_objective", common_in,
                       [tensor_info(F, DOUBLE, [B]), tensor_info(GRAD, FLOAT, [B, tail.size]),
                        tensor_info(F_HELD, DOUBLE, [B])], inits)
    # image: no saved values needed (ORT drops the nodes that feed nothing)
    b, inits = image_builder(tail, form, batch=batch)
    img = finish_model(b, "gs_image", common_in,
                       [tensor_info(X01, FLOAT, [B, c, h, w]), tensor_info(ERR, DOUBLE, [B]),
                        tensor_info(ERR_HELD, DOUBLE, [B])], inits)
    return obj, img


def split_models(tail: Tail, *, batch: int | None = None):
    """(forward ModelProto, VJP ModelProto, names the VJP reads) for an operator applied on the host.

    forward: ``packed_z`` -> ``x01`` (B, C, H, W) plus every environment value the VJP reads;
    vjp: those values plus ``grad_x01`` -> ``grad`` (B, size).
    """
    man = tail.manifest
    B = _dims(batch)
    c, h, w = man.image_shape
    b = Builder()
    _unpack(b, tail, batch)
    fnodes, finits = _copy_nodes(tail.fwd)
    b.nodes += fnodes
    _to_unit(b, tail, X01)
    infos = {v.name: v for v in list(tail.fwd.graph.output) + list(tail.fwd.graph.input)}
    keep = [n for n in tail.reads]
    outs = [tensor_info(X01, FLOAT, [B, c, h, w])]
    for n in keep:
        v = _clone_info(infos[n], batch)
        outs.append(v)
    fwd = finish_model(b, "gs_forward", [tensor_info(Z, FLOAT, [B, tail.size])], outs, finits)

    b = Builder()
    _grad_image(b, tail, GRAD_X01)
    vnodes, vinits = _copy_nodes(tail.vjp)
    b.nodes += vnodes
    _pack(b, tail, [f"grad_{n_}" for n_ in tail.inputs], batch)
    ins = [_clone_info(infos[n], batch) for n in keep] + [tensor_info(GRAD_X01, FLOAT, [B, c, h, w])]
    vjp = finish_model(b, "gs_vjp", ins, [tensor_info(GRAD, FLOAT, [B, tail.size])], vinits)
    return fwd, vjp, keep


def _clone_info(v, batch):
    onnx, _, _ = onnx_modules()
    c = onnx.ValueInfoProto()
    c.CopyFrom(v)
    if batch is not None and c.type.tensor_type.shape.dim:
        d = c.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = int(batch)
    return c
