"""One block of a generator on ONNX Runtime: its forward graph and its vector-Jacobian graph."""
from __future__ import annotations

import numpy as np

from .manifest import BlockSpec, Manifest
from .providers import Device, active_provider, create_session


class Block:
    """Sessions for block ``spec.index`` of a model.

    ``forward(inputs)`` maps {input name: (B, ...) float32} to {output name: (B, ...) float32};
    ``vjp(inputs, grads)`` maps the same inputs and {output name: dL/d output} to {input name: dL/d input}.
    """

    def __init__(self, manifest: Manifest, spec: BlockSpec, device: Device = "auto", threads: int = 0):
        self.spec = spec
        self.fwd = create_session(manifest.path(spec.forward.file), device, threads)
        self.bwd = create_session(manifest.path(spec.vjp.file), device, threads)
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
