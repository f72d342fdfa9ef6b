"""``mganprior``: mGANprior (Gu et al., CVPR 2020) with the same block graphs, torch-free: N codes composed at the
cut (:class:`gs_onnx.solve.mganprior.MultiCodeObjective`)."""
from __future__ import annotations

from ..registry import Method, register
from ._restart import RESTART_SETTINGS, RestartSolver


class MultiCodeSolver(RestartSolver):
    """N codes through the first c blocks, combined with per-channel weights at the cut, then the tail."""

    def _template(self, y):
        from ..mganprior import MultiCodeObjective, default_codes

        self.codes = default_codes(self.man) if self.s.codes is None else self.s.codes
        self.obj = MultiCodeObjective(self.man, self.cut, self.op, y, self.codes, self.s.device, self.s.threads)
        return self.obj

    def _header(self):
        return {"codes": self.codes, "composed": self.obj.composed, "free_inputs": list(self.obj.free),
                "free_values": self.obj.layout.size}


METHOD = register(Method(
    "mganprior", "N codes through the first c blocks, combined at the cut",
    lambda y, sidecar, s, op=None: MultiCodeSolver("mganprior", y, sidecar, s, op),
    settings=RESTART_SETTINGS | {"codes"},
    generator=True, restarts=True, label="mGANprior"))
