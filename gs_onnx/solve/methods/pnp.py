"""``pnp``: plug-and-play proximal gradient with the shipped ONNX denoiser (no generator); ``pnp-bm3d``: the same
with BM3D, the classical baseline (the ``bm3d`` extra). :mod:`gs_onnx.solve.pnp` has the algorithm and the plans."""
from __future__ import annotations

import numpy as np

from ...physics.datafit import measurement_error
from ..registry import Method, register
from ..settings import Settings
from ._image import ImageSolver


class PnPSolver(ImageSolver):
    """Plug-and-play with a denoiser prior: the images of a chunk share every application of A; each image holds
    out its own seeded rows (seed + its index) to choose its iterate."""

    kind = "onnx"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ..pnp import HOLDOUT, PATIENCE, Schedule, plan_for
        from ..priors import denoiser_for

        plan = plan_for(self.kind, (sidecar.get("operator") or {}).get("type") if op is None
                        else (op.describe() or {}).get("type"))
        self._setup(sidecar, s, op, int(plan["iterations"]))
        self.schedule = Schedule(int(self.max_iter), float(plan["sigma_max"]), float(plan["sigma_min"]))
        self.step = float(plan.get("step", 1.0))
        self.seed = s.seed
        self.denoiser = denoiser_for(self.kind, s.denoiser, s.device, s.threads, s.models_dir)
        self.holdout, self.patience = HOLDOUT, PATIENCE
        self.how = f"by plug-and-play ({self.kind} denoiser on {self.denoiser.provider})"
        self.header = {"model": None, "cut": None, "free_values": self.op.n, "device": s.device,
                       "provider": self.denoiser.provider, "denoiser": self.denoiser.describe(),
                       "solver": {"algorithm": "plug-and-play proximal gradient with momentum", **self.schedule.describe(),
                                  "step": self.step, "holdout": self.holdout, "patience": self.patience}}

    def _masks(self, first: int, count: int) -> np.ndarray:
        from ..stopping import holdout_mask

        return np.stack([holdout_mask(self.op.m, self.holdout, self.seed + first + j) for j in range(count)])

    def _batch(self, Y, cb, first=0):
        from ..pnp import pnp_batch

        out = []
        for res, y in zip(pnp_batch(self.op, Y, self.shape, self.denoiser, self.schedule, w=self._masks(first, len(Y)),
                                    lipschitz=self.L, step=self.step, patience=self.patience,
                                    callback=lambda k, e: cb(k, e)), Y):
            out.append((res.image, {"measurement_error": measurement_error(self.op, res.image, y),
                                    "objective": res.objective, "evaluations": res.iterations,
                                    "best_iteration": res.best_iteration, "held_out": res.held_out}))
        return out


class PnPBM3DSolver(PnPSolver):
    kind = "bm3d"


METHOD = register(Method(
    "pnp", "plug-and-play with the shipped ONNX denoiser (no generator)", PnPSolver,
    settings=frozenset({"max_iter", "batch_size", "denoiser"}), batched=True, label="PnP"))
BM3D_METHOD = register(Method(
    "pnp-bm3d", "plug-and-play with BM3D, the classical baseline (no generator)", PnPBM3DSolver,
    settings=frozenset({"max_iter", "batch_size"}), batched=True, extra="bm3d", label="PnP-BM3D"))
