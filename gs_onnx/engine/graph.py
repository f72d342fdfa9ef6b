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
:class:`gs_onnx.latent.LatentLayout`). Every graph has a dynamic batch axis unless built for a fixed batch
(``batch=B``: static shapes, which CUDA graphs need).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence

import numpy as np

from ..errors import GSError
from ..manifest import Manifest
from . import merge

#: Names of the composed graphs' inputs and outputs (part of the format; docs/manifest.md).
Z, Y, W, F, GRAD, F_HELD, X01, ERR, ERR_HELD, GRAD_X01 = (
    "packed_z", "y", "w", "f", "grad", "f_held", "x01", "err", "err_held", "grad_x01")
RESERVED = (Z, Y, W, F, GRAD, F_HELD, X01, ERR, ERR_HELD, GRAD_X01)
#: IR version of the composed models: that of the exported block graphs, which every supported ONNX Runtime reads.
IR_VERSION = 10

_FLOAT, _DOUBLE, _INT64 = 1, 11, 7


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise GSError("the composed engine needs the onnx package: pip install onnx") from None
    return onnx, helper, numpy_helper


class Builder:
    """Appends nodes and constants to a graph under construction; every name it makes starts with ``gs/``.

    Operators' ONNX forms (:class:`OnnxForm`) add their nodes through it.
    """

    def __init__(self):
        _, self.helper, self.numpy_helper = _onnx()
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"gs/{hint}_{self._n}"

    def const(self, value, hint: str = "c", dtype=None) -> str:
        """An initializer holding ``value`` (numpy array or scalar); identical constants are shared."""
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())
        if key not in self._consts:
            name = self.fresh(hint)
            self.inits.append(self.numpy_helper.from_array(np.require(a, requirements="C"), name))
            self._consts[key] = name
        return self._consts[key]

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int | Sequence[str] = 1,
           **attrs):
        """Add one node. ``outputs``: a count of fresh names or the names themselves. Returns the output name
        for one fresh output, else the list of names."""
        outs = [self.fresh(hint or op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) \
            else list(outputs)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"n_{op_type}"),
                                                **attrs))
        return outs[0] if outputs == 1 else outs


@dataclasses.dataclass
class OnnxForm:
    """How a linear operator appears in a composed graph.

    Attributes
    ----------
    inputs : {graph input name: ((shape), make)}: large tensors given at run time rather than stored in the
        graph (the dense Gaussian ``A``); ``make()`` returns the float32 array, bound once per session.
    forward : ``forward(builder, x) -> name``: adds the nodes of ``A x`` for x (B, n) float32, giving (B, m).
    adjoint : ``adjoint(builder, r) -> name``: adds the nodes of ``A^T r`` for r (B, m), giving (B, n).
    """

    inputs: dict[str, tuple[tuple[int, ...], Callable[[], np.ndarray]]]
    forward: Callable[[Builder, str], str]
    adjoint: Callable[[Builder, str], str]


def _tensor_info(name: str, elem: int, dims: Sequence):
    _, helper, _ = _onnx()
    return helper.make_tensor_value_info(name, elem, list(dims))


def _dedupe_initializers(inits: list, nodes: list) -> list:
    """Keep one copy of initializers with equal contents (a block's forward and VJP graphs read the same
    weights); node inputs are renamed to the copy kept."""
    seen: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    kept = []
    for t in inits:
        key = (t.data_type, tuple(t.dims), hashlib.sha256(t.raw_data).hexdigest() if t.raw_data else t.SerializeToString())
        if key in seen:
            rename[t.name] = seen[key]
            continue
        seen[key] = t.name
        kept.append(t)
    if rename:
        for node in nodes:
            node.input[:] = [rename.get(x, x) for x in node.input]
    return kept


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
    by :func:`gs_onnx.manifest.load_manifest`)."""
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
    onnx, _, _ = _onnx()
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
    rd = b.op("Cast", [r], "rd", to=_DOUBLE)
    wd = b.op("Cast", [W], "wd", to=_DOUBLE)
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
    return b.op("Cast", [factor], "factor32", to=_FLOAT)


def _prune(nodes: list, outputs: Sequence[str]) -> list:
    """The nodes that some output depends on, in their order (the image graph needs no saved values)."""
    need = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(x for x in node.input if x)
    return keep[::-1]


def _finish(b: Builder, name: str, inputs: list, outputs: list, extra_inits: list = ()):
    onnx, helper, _ = _onnx()
    b.nodes = _prune(b.nodes, [o.name for o in outputs])
    used = {x for node in b.nodes for x in node.input}
    inits = _dedupe_initializers([t for t in list(extra_inits) + b.inits if t.name in used], b.nodes)
    graph = helper.make_graph(b.nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = IR_VERSION
    return model


def _dims(batch) -> str | int:
    return "batch" if batch is None else int(batch)


def objective_models(tail: Tail, form: OnnxForm, m: int, *, batch: int | None = None):
    """(objective ModelProto, image ModelProto) for the cut generator ``tail`` and an operator in ONNX form
    with ``m`` measurements. See the module docstring for the inputs and outputs."""
    man = tail.manifest
    n = man.n
    B = _dims(batch)
    op_inputs = [_tensor_info(k, _FLOAT, shape) for k, (shape, _) in form.inputs.items()]
    common_in = [_tensor_info(Z, _FLOAT, [B, tail.size]), _tensor_info(Y, _FLOAT, [B, m]),
                 _tensor_info(W, _FLOAT, [B, m])] + op_inputs

    # ---- objective: f, grad, f_held
    b = Builder()
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
    obj = _finish(b, "gs_objective", common_in,
                  [_tensor_info(F, _DOUBLE, [B]), _tensor_info(GRAD, _FLOAT, [B, tail.size]),
                   _tensor_info(F_HELD, _DOUBLE, [B])], finits + vinits)

    # ---- image: x01, err, err_held (no saved values needed: ORT drops the nodes that feed nothing)
    b = Builder()
    _unpack(b, tail, batch)
    fnodes, finits = _copy_nodes(tail.fwd)
    b.nodes += fnodes
    _to_unit(b, tail, X01)
    clamped = b.op("Clip", [X01, b.const(np.float32(0.0), "zero"), b.const(np.float32(1.0), "one")], "clamped")
    xf = b.op("Reshape", [clamped, b.const(np.asarray([-1, n], np.int64), "shape")], "xflat")
    r = b.op("Sub", [form.forward(b, xf), Y], "r")
    axes = b.const(np.asarray([1], np.int64), "axes")
    rd = b.op("Cast", [r], "rd", to=_DOUBLE)
    r2 = b.op("Mul", [rd, rd], "r2")
    b.op("Sqrt", [b.op("ReduceSum", [r2, axes], "ss", keepdims=0)], outputs=[ERR])
    hold = b.op("Sub", [b.const(np.float64(1.0), "one"), b.op("Cast", [W], "wd", to=_DOUBLE)], "hold")
    b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [r2, hold], "hr2"), axes], "hs", keepdims=0)], outputs=[ERR_HELD])
    img = _finish(b, "gs_image", common_in,
                  [_tensor_info(X01, _FLOAT, [B, c, h, w]), _tensor_info(ERR, _DOUBLE, [B]),
                   _tensor_info(ERR_HELD, _DOUBLE, [B])], finits)
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
    outs = [_tensor_info(X01, _FLOAT, [B, c, h, w])]
    for n in keep:
        v = _clone_info(infos[n], batch)
        outs.append(v)
    fwd = _finish(b, "gs_forward", [_tensor_info(Z, _FLOAT, [B, tail.size])], outs, finits)

    b = Builder()
    _grad_image(b, tail, GRAD_X01)
    vnodes, vinits = _copy_nodes(tail.vjp)
    b.nodes += vnodes
    _pack(b, tail, [f"grad_{n_}" for n_ in tail.inputs], batch)
    ins = [_clone_info(infos[n], batch) for n in keep] + [_tensor_info(GRAD_X01, _FLOAT, [B, c, h, w])]
    vjp = _finish(b, "gs_vjp", ins, [_tensor_info(GRAD, _FLOAT, [B, tail.size])], vinits)
    return fwd, vjp, keep


def _clone_info(v, batch):
    onnx, _, _ = _onnx()
    c = onnx.ValueInfoProto()
    c.CopyFrom(v)
    if batch is not None and c.type.tensor_type.shape.dim:
        d = c.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = int(batch)
    return c


def operator_model(form: OnnxForm, n: int, m: int, adjoint: bool = False):
    """A standalone ModelProto of an operator's ONNX form: input ``x`` (B, n) float32 (``r`` (B, m) for the
    adjoint) and the form's run-time inputs, output ``y`` (B, m) (``x`` (B, n) for the adjoint). For checking
    a form against its numpy twin, and for using an operator from another language."""
    b = Builder()
    src, dst, cols_in, cols_out = ("r", "x", m, n) if adjoint else ("x", "y", n, m)
    out = (form.adjoint if adjoint else form.forward)(b, src)
    b.op("Identity", [out], outputs=[dst])
    inputs = [_tensor_info(src, _FLOAT, ["batch", cols_in])]
    inputs += [_tensor_info(k, _FLOAT, shape) for k, (shape, _) in form.inputs.items()]
    return _finish(b, "gs_operator_adjoint" if adjoint else "gs_operator", inputs,
                   [_tensor_info(dst, _FLOAT, ["batch", cols_out])])
