"""``gs-tv``: Generator Surgery, then total variation anchored to the generator's image."""
from __future__ import annotations

import numpy as np

from ...physics.datafit import measurement_error
from ..registry import Method, register
from ..settings import Settings
from .gs import GS_SETTINGS, RefinedGS


class GSTVSolver(RefinedGS):
    """gs-tv: Generator Surgery, then total variation anchored to the generator's image,
    ``min_x ||A x - y||^2 + lam TV(x) + gamma ||x - G||^2`` over x in [0, 1] (:func:`gs_onnx.solve.tv.tv_batch`).
    The generator brings what it knows of faces, TV fills what it cannot represent and keeps the image close to
    the measurements; ``lam`` is TV's weight for the operator, ``gamma`` the anchor's
    (the model's ``recommended.gs_tv``, else :data:`gs_onnx.solve.tv.LAM` and :data:`gs_onnx.solve.tv.GAMMA`,
    chosen on CelebA train faces), ``--lam``/``--gamma`` override them."""

    warm_start = False

    def __init__(self, method: str, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ..lasso import lipschitz
        from ..tv import MAX_ITER, tv_weights

        super().__init__(method, y, sidecar, s, op)
        self.lam, self.gamma = tv_weights(self.man, (self.op.describe() or {}).get("type"), s.lam, s.gamma)
        self.L = lipschitz(self.op)
        self.header["tv"] = {"lam": self.lam, "gamma": self.gamma, "max_iter": MAX_ITER}
        self.how += " + TV"

    def _refine(self, images, Y):
        from ..tv import tv_batch

        G = np.stack(images).astype(np.float32)
        Y = np.asarray(Y, np.float32).reshape(len(G), -1)
        return tv_batch(self.op, Y, G.shape[1:], self.lam, lipschitz=self.L, anchor=G, gamma=self.gamma)

    def refine_images(self, images, fields, Y, first):
        Y = np.asarray(Y, np.float32)
        return [self._with_tv(im, f, y, r) for im, f, y, r in zip(images, fields, Y, self._refine(images, Y))]

    def _with_tv(self, gs_image, fields, y, res):
        self.last_gs_image = gs_image  # the generator's image the refinement was anchored to (gs alone)
        y = np.asarray(y, np.float32).reshape(-1)
        fields = dict(fields, gs_measurement_error=fields["measurement_error"],
                      measurement_error=measurement_error(self.op, res.image, y),
                      tv={"iterations": res.iterations, "objective": res.objective, "converged": res.converged})
        return res.image, fields


def make(y, sidecar, s, op=None):
    """gs-tv's factory: its GS stage with the operator's optimiser (:data:`gs_onnx.solve.tv.GS_OPTIMIZER`, unless
    ``--optimizer`` is given); the recovery graph for ``--engine recovery-graph``."""
    import dataclasses

    from ..tv import GS_OPTIMIZER
    from .gs_graph import GRAPH_ENGINE

    kind = ((op.describe() if op is not None else sidecar.get("operator")) or {}).get("type")
    if s.optimizer is None and kind in GS_OPTIMIZER:
        s = dataclasses.replace(s, optimizer=GS_OPTIMIZER[kind])
    if s.engine == GRAPH_ENGINE:
        from .gs_graph import GraphSolver

        return GraphSolver(y, sidecar if op is None else {**sidecar, "operator": op.describe()}, s, op, method="gs-tv")
    return GSTVSolver("gs-tv", y, sidecar, s, op)


METHOD = register(Method(
    "gs-tv", "GS, then total variation anchored to its image", make,
    settings=GS_SETTINGS | {"lam", "gamma"}, generator=True, restarts=True, planned=True, batched=True,
    label="GS + TV"))
