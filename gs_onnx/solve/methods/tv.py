"""``tv``: total variation, no model (:mod:`gs_onnx.solve.tv`)."""
from __future__ import annotations

import numpy as np

from ...physics.datafit import measurement_error
from ..registry import Method, register
from ..settings import Settings
from ._image import ImageSolver


class TVSolver(ImageSolver):
    """Total variation: min ||A x - y||^2 + lam TV(x) over x in [0, 1] by FISTA with a TV prox (no model,
    no training); ``lam`` per operator type as chosen on CelebA train faces (:data:`gs_onnx.solve.tv.LAM`)
    unless ``--lam`` says; the images of a chunk share every application of A (:func:`gs_onnx.solve.tv.tv_batch`)."""

    how = "by TV (FISTA)"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ..tv import MAX_ITER, TOL, default_lam

        self._setup(sidecar, s, op, MAX_ITER)
        self.lam = default_lam((self.op.describe() or {}).get("type")) if s.lam is None else s.lam
        self.header = {"model": None, "cut": None, "free_values": self.op.n, "lam": self.lam, "device": "cpu", "provider": "numpy/scipy",
                       "solver": {"algorithm": "FISTA with adaptive restart, isotropic TV prox by dual fast "
                                               "gradient projection, box [0, 1]", "max_iter": self.max_iter, "tol": TOL}}

    def _batch(self, Y, cb, first=0):
        from ..tv import tv_batch

        return [(res.image, {"measurement_error": measurement_error(self.op, res.image, y), "objective": res.objective,
                             "evaluations": res.iterations, "converged": res.converged})
                for res, y in zip(tv_batch(self.op, Y, self.shape, self.lam, max_iter=self.max_iter, lipschitz=self.L,
                                           callback=cb), Y)]


METHOD = register(Method("tv", "total variation, its weight per operator chosen on train faces (no model)", TVSolver,
                         settings=frozenset({"lam", "max_iter", "batch_size"}), batched=True, label="TV"))
