"""The tail of a cut generator as two ONNX graphs: all its blocks' forward graphs in one, all their VJP graphs
(in reverse order, gradients summed where a tensor feeds several blocks) in the other.

One session per direction instead of one per block: fewer runs, no layout reorders between blocks, no
copies of intermediate tensors to numpy. The composed objective (:mod:`gs_onnx.engine.graph`)
is built from these two graphs; :class:`gs_onnx.engine.cut.CutGenerator` can run them as two sessions
(``merged=True``).

Names: every tensor local to one block graph is prefixed ``f<k>/`` (forward) or ``v<k>/`` (VJP); the
tensors that connect blocks (block inputs, outputs, saved values) keep their names. In the VJP graph,
block k's gradient for its input t is ``grad_t@<k>``; ``grad_t`` is their sum, made where it is read.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import GSError
from ..generator.manifest import BlockSpec, Manifest, load_graph


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency; this guards a broken install
        return None
    return onnx


def available() -> bool:
    return _onnx() is not None


def _load(manifest: Manifest, graph):
    """A block graph with its weights embedded from verified bytes (:func:`gs_onnx.generator.manifest.load_graph`)."""
    return load_graph(manifest, graph.file, graph.inputs, graph.outputs)


def _append(graph, prefix: str, keep: set[str], rename: dict[str, str], nodes: list, inits: list) -> None:
    """Append ``graph``'s nodes and initializers, local names prefixed, names in ``rename`` mapped."""

    def ren(n: str) -> str:
        if n == "":
            return n
        if n in rename:
            return rename[n]
        return n if n in keep else f"{prefix}{n}"

    for t in graph.initializer:
        t.name = ren(t.name)
        inits.append(t)
    for j, node in enumerate(graph.node):
        node.input[:] = [ren(x) for x in node.input]
        node.output[:] = [ren(x) for x in node.output]
        node.name = f"{prefix}{node.name or f'node{j}'}"
        nodes.append(node)


def _value_infos(graphs) -> dict[str, object]:
    out = {}
    for g in graphs:
        for v in list(g.input) + list(g.output):
            out.setdefault(v.name, v)
    return out


def merged_graphs(manifest: Manifest, blocks: Sequence[BlockSpec], inputs: Sequence[str]) -> tuple[bytes, bytes, list[str]]:
    """:func:`merged_models`, serialized: (forward model bytes, VJP model bytes, names the VJP model reads)."""
    fwd, vjp, reads = merged_models(manifest, blocks, inputs)
    return fwd.SerializeToString(), vjp.SerializeToString(), reads


def merged_models(manifest: Manifest, blocks: Sequence[BlockSpec], inputs: Sequence[str]):
    """(forward ModelProto, VJP ModelProto, environment names the VJP model reads).

    The forward model maps the cut ``inputs`` to every block output and saved value (in block order);
    the VJP model maps those it needs plus ``grad_<image>`` to ``grad_<input>`` for every cut input.

    Raises
    ------
    GSError
        When a block output other than the image feeds no later block (its zero gradient is not modelled)
        or onnx is missing.
    """
    onnx = _onnx()
    if onnx is None:
        raise GSError("merged graphs need the onnx package")
    from onnx import helper

    image = manifest.image
    fwd_models = [_load(manifest, b.forward) for b in blocks]
    vjp_models = [_load(manifest, b.vjp) for b in blocks]
    connect = set(inputs) | {n for b in blocks for n in b.forward.outputs}
    consumers: dict[str, list[int]] = {}
    for k, b in enumerate(blocks):
        for n in b.inputs:
            consumers.setdefault(n, []).append(k)
    for k, b in enumerate(blocks):
        for n in b.outputs:
            if n != image and not consumers.get(n):
                raise GSError(f"block output {n} feeds no later block")

    # forward: blocks in order
    nodes, inits = [], []
    for k, (b, m) in enumerate(zip(blocks, fwd_models)):
        _append(m.graph, f"f{k}/", connect, {}, nodes, inits)
    infos = _value_infos(m.graph for m in fwd_models)
    env_names = [n for b in blocks for n in b.forward.outputs]
    fwd = helper.make_graph(nodes, "tail_forward", [infos[n] for n in inputs], [infos[n] for n in env_names], inits)
    fwd_model = helper.make_model(fwd, opset_imports=fwd_models[0].opset_import)

    # VJP: blocks in reverse order; grad_t = sum of the consumers' contributions, built just before use
    nodes, inits = [], []
    grad_in = f"grad_{image}"
    made: set[str] = set()

    def grad_of(t: str) -> str:
        if t == image:
            return grad_in
        name = f"grad_{t}"
        if name not in made:
            parts = [f"grad_{t}@{k}" for k in consumers[t]]
            nodes.append(helper.make_node("Sum" if len(parts) > 1 else "Identity", parts, [name], name=f"sum/{t}"))
            made.add(name)
        return name

    reads: list[str] = []
    for k in reversed(range(len(blocks))):
        b, m = blocks[k], vjp_models[k]
        rename = {}
        for n in b.vjp.inputs:
            if n.startswith("grad_") and n[5:] in b.outputs:
                rename[n] = grad_of(n[5:])
            elif n not in reads:
                reads.append(n)
        for n in b.vjp.outputs:
            rename[n] = f"{n}@{k}"
        _append(m.graph, f"v{k}/", connect, rename, nodes, inits)
    outs = [grad_of(n) for n in inputs]
    vinfos = _value_infos(m.graph for m in vjp_models)
    g_inputs = [vinfos.get(n) or infos[n] for n in reads] + [vinfos[grad_in]]
    g_outputs = []
    for n in inputs:
        v = onnx.ValueInfoProto()
        v.CopyFrom(vinfos.get(f"grad_{n}") or infos[n])
        v.name = f"grad_{n}"
        g_outputs.append(v)
    vjp = helper.make_graph(nodes, "tail_vjp", g_inputs, g_outputs, inits)
    vjp_model = helper.make_model(vjp, opset_imports=vjp_models[0].opset_import)
    return fwd_model, vjp_model, reads
