"""Operators as ONNX nodes: the :class:`Builder` that appends nodes to a graph under construction, the
:class:`OnnxForm` an operator returns from ``onnx_form()`` (its forward and adjoint as nodes), and
:func:`operator_model`, one operator as a standalone ONNX model (for checking a form against its numpy twin, and
for using an operator from another language). The composed engine (:mod:`gs_onnx.engine.graph`) builds its
graphs with the same tools; they live here, below it, so that operators never import the engine.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence

import numpy as np

from ..errors import GSError

#: IR version of the composed models: that of the exported block graphs, which every supported ONNX Runtime reads.
IR_VERSION = 10

#: ONNX element types used by the graphs.
FLOAT, DOUBLE, INT64 = 1, 11, 7


def onnx_modules():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise GSError("the composed engine needs the onnx package: pip install onnx") from None
    return onnx, helper, numpy_helper


class Builder:
    """Appends nodes and constants to a graph under construction; every name it makes starts with ``prefix``
    (default ``gs/``).

    Operators' ONNX forms (:class:`OnnxForm`) add their nodes through it.
    """

    def __init__(self, lift: bool = False, prefix: str = "gs/"):
        _, self.helper, self.numpy_helper = onnx_modules()
        self.prefix = prefix
        #: with ``lift``, :meth:`data` makes graph inputs instead of constants (the recovery graph: the operator
        #: as data a program feeds); ``lifted`` holds their values by input name
        self.lift = bool(lift)
        self.lifted: dict[str, np.ndarray] = {}
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}{hint}_{self._n}"

    def const(self, value, hint: str = "c", dtype=None) -> str:
        """An initializer holding ``value`` (numpy array or scalar); identical constants are shared."""
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest())
        if key not in self._consts:
            name = self.fresh(hint)
            self.inits.append(self.numpy_helper.from_array(np.require(a, requirements="C"), name))
            self._consts[key] = name
        return self._consts[key]

    def data(self, value, name: str, dtype=None) -> str:
        """An operator's parameter (random signs, kept indices, a kernel): a constant shared like :meth:`const`,
        or, in a lifting builder, a graph input named ``op_<name>`` whose value goes to :attr:`lifted`."""
        if not self.lift:
            return self.const(value, name, dtype)
        a = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = f"op_{name}"
        prev = self.lifted.get(key)
        if prev is not None and not (prev.dtype == a.dtype and prev.shape == a.shape and np.array_equal(prev, a)):
            raise GSError(f"two different operator parameters are both named {name!r}")
        self.lifted[key] = a
        return key

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int | Sequence[str] = 1,
           **attrs):
        """Add one node. ``outputs``: a count of fresh names or the names themselves. Returns the output name
        for one fresh output, else the list of names. A convolution (:data:`CONV_OPS`) takes ``kernel_shape`` and
        gets every other attribute spelled out (:func:`conv_attributes`)."""
        if op_type in CONV_OPS:
            if "kernel_shape" not in attrs:
                raise ValueError(f"a {op_type} needs its kernel_shape (every attribute is spelled out)")
            attrs = conv_attributes(attrs.pop("kernel_shape"), **attrs)
        outs = [self.fresh(hint or op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) \
            else list(outputs)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"n_{op_type}"),
                                                **attrs))
        return outs[0] if outputs == 1 else outs


#: The convolutions whose attributes the project always spells out (:func:`conv_attributes`).
CONV_OPS = ("Conv", "ConvTranspose")


def conv_attributes(kernel_shape: Sequence[int], **given) -> dict:
    """Every attribute of a ``Conv`` or ``ConvTranspose`` with ``kernel_shape``: ONNX's defaults (stride 1, dilation 1,
    no padding, one group) where ``given`` does not set them. The one rule for every convolution this project builds:
    onnxruntime-web's WebGPU kernels refuse a node that leaves them out ("dilations should be 2D"), where the CPU and
    WASM kernels take the defaults.

    >>> conv_attributes([3, 1], group=3, pads=[1, 0, 1, 0])
    {'kernel_shape': [3, 1], 'strides': [1, 1], 'dilations': [1, 1], 'pads': [1, 0, 1, 0], 'group': 3}
    """
    d = len(kernel_shape)
    out = {"kernel_shape": [int(v) for v in kernel_shape], "strides": [1] * d, "dilations": [1] * d,
           "pads": [0] * (2 * d), "group": 1}
    unknown = sorted(set(given) - set(out) - {"output_padding", "output_shape", "auto_pad"})
    if unknown:
        raise ValueError(f"not an attribute of a convolution: {unknown[0]!r}")
    out.update(given)
    return out


def spell_out_conv(node, kernel_shape: Sequence[int]) -> None:
    """Adds to a ``Conv``/``ConvTranspose`` NodeProto the attributes it leaves out (:func:`conv_attributes`)."""
    _, helper, _ = onnx_modules()
    have = {a.name for a in node.attribute}
    for key, v in conv_attributes(kernel_shape).items():
        if key not in have:
            node.attribute.append(helper.make_attribute(key, v))


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


def tensor_info(name: str, elem: int, dims: Sequence):
    _, helper, _ = onnx_modules()
    return helper.make_tensor_value_info(name, elem, list(dims))


def dedupe_initializers(inits: list, nodes: list) -> list:
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


def prune(nodes: list, outputs: Sequence[str]) -> list:
    """The nodes that some output depends on, in their order (the image graph needs no saved values)."""
    need = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(x for x in node.input if x)
    return keep[::-1]


def finish_model(b: Builder, name: str, inputs: list, outputs: list, extra_inits: list = ()):
    onnx, helper, _ = onnx_modules()
    b.nodes = prune(b.nodes, [o.name for o in outputs])
    used = {x for node in b.nodes for x in node.input}
    inits = dedupe_initializers([t for t in list(extra_inits) + b.inits if t.name in used], b.nodes)
    graph = helper.make_graph(b.nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = IR_VERSION
    return model


def operator_model(form: OnnxForm, n: int, m: int, adjoint: bool = False):
    """A standalone ModelProto of an operator's ONNX form: input ``x`` (B, n) float32 (``r`` (B, m) for the
    adjoint) and the form's run-time inputs, output ``y`` (B, m) (``x`` (B, n) for the adjoint). For checking
    a form against its numpy twin, and for using an operator from another language."""
    b = Builder()
    src, dst, cols_in, cols_out = ("r", "x", m, n) if adjoint else ("x", "y", n, m)
    out = (form.adjoint if adjoint else form.forward)(b, src)
    b.op("Identity", [out], outputs=[dst])
    inputs = [tensor_info(src, FLOAT, ["batch", cols_in])]
    inputs += [tensor_info(k, FLOAT, shape) for k, (shape, _) in form.inputs.items()]
    return finish_model(b, "gs_operator_adjoint" if adjoint else "gs_operator", inputs,
                   [tensor_info(dst, FLOAT, ["batch", cols_out])])
