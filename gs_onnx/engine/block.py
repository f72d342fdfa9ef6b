"""One block of a generator on ONNX Runtime: its forward graph and its vector-Jacobian graph."""
from __future__ import annotations

import numpy as np

from ..generator.manifest import BlockSpec, Manifest, load_graph
from .runtime import Device, active_provider, create_session


class Block:
    """Sessions for block ``spec.index`` of a model.

    ``forward(inputs)`` maps {input name: (B, ...) float32} to {output name: (B, ...) float32}, plus the
    values the VJP graph reads instead of recomputing the block ("saved": masks, exponentials; any dtype);
    ``vjp(env, grads)`` maps an environment holding the inputs and everything ``forward`` returned, and
    {output name: dL/d output}, to {input name: dL/d input}.
    """

    def __init__(self, manifest: Manifest, spec: BlockSpec, device: Device = "auto", threads: int = 0):
        self.spec = spec
        g = spec.forward
        self.fwd = create_session(load_graph(manifest, g.file, g.inputs, g.outputs).SerializeToString(), device, threads)
        g = spec.vjp
        self.bwd = create_session(load_graph(manifest, g.file, g.inputs, g.outputs).SerializeToString(), device, threads)
        self.provider = active_provider(self.fwd)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.spec.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.spec.outputs

    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = self.spec.forward
        outs = self.fwd.run(list(g.outputs), {n: inputs[n] for n in g.inputs})
        return dict(zip(g.outputs, outs))

    def vjp(self, inputs: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = self.spec.vjp
        feed = {}
        for n in g.inputs:
            feed[n] = grads[n[5:]] if n.startswith("grad_") and n[5:] in self.spec.outputs else inputs[n]
        outs = self.bwd.run(list(g.outputs), feed)
        return {n[5:]: o for n, o in zip(g.outputs, outs)}


def run_chain(blocks: list[Block], env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``blocks`` in order on ``env`` ({tensor name: (B, ...) float32}); returns ``env`` updated in
    place with every tensor the blocks computed (kept for :func:`vjp_chain`)."""
    for blk in blocks:
        env.update(blk.forward(env))
    return env


def vjp_chain(blocks: list[Block], env: dict[str, np.ndarray],
              grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Back-propagate ``grads`` ({tensor: dL/dtensor}) through ``blocks`` (given in forward order).

    ``env`` is the environment :func:`run_chain` left. Returns dL/d every tensor reached, inputs of the
    first block included; gradients reaching a tensor from several blocks (BEGAN's skip source) are
    summed, and outputs with no incoming gradient count as zero.
    """
    grads = dict(grads)
    for blk in reversed(blocks):
        if not any(n in grads for n in blk.outputs):
            continue
        out_g = {n: grads[n] if n in grads else np.zeros_like(env[n]) for n in blk.outputs}
        for n, g in blk.vjp(env, out_g).items():
            grads[n] = grads[n] + g if n in grads else g
    return grads
