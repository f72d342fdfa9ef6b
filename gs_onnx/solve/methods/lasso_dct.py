"""``lasso-dct``: the paper's sparsity baseline, min ||y - A Phi z||^2 + lam ||z||_1 with Phi the orthonormal 2-D
inverse DCT per channel (:mod:`gs_onnx.solve.lasso`)."""
from __future__ import annotations

import numpy as np

from ...physics.datafit import measurement_error
from ..registry import Method, register
from ..settings import Settings
from ._image import ImageSolver


class LassoSolver(ImageSolver):
    """Lasso-DCT: FISTA with adaptive restart and continuation on min ||y - A Phi z||^2 + lam ||z||_1 (no
    model); the images of a chunk are solved together, sharing every read of A (:func:`gs_onnx.solve.lasso.lasso_dct_batch`)."""

    how = "by Lasso-DCT"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ..lasso import MAX_ITER, TOL, default_lam

        self._setup(sidecar, s, op, MAX_ITER)
        self.lam = default_lam((self.op.describe() or {}).get("type")) if s.lam is None else s.lam
        self.header = {"model": None, "cut": None, "free_values": self.op.n, "lam": self.lam, "device": "cpu", "provider": "numpy/scipy",
                       "solver": {"algorithm": "FISTA with adaptive restart and continuation",
                                  "max_iter": self.max_iter, "tol": TOL}}

    def _batch(self, Y, cb, first=0):
        from ..lasso import lasso_dct_batch

        out = []
        for res, y in zip(lasso_dct_batch(self.op, Y, self.shape, self.lam, max_iter=self.max_iter,
                                          lipschitz=self.L, callback=cb), Y):
            image = np.clip(res.image, 0.0, 1.0).astype(np.float32)
            out.append((image, {"measurement_error": measurement_error(self.op, image, y), "objective": res.objective,
                                "evaluations": res.iterations, "kkt_residual": res.kkt, "converged": res.converged}))
        return out


METHOD = register(Method("lasso-dct", "l1 sparsity of the image's DCT coefficients (no model)", LassoSolver,
                         settings=frozenset({"lam", "max_iter", "batch_size"}), batched=True, label="Lasso-DCT"))
