"""``gs``: Generator Surgery (Park et al.): the generator cut at block c, its tail's input optimised (``--cut 0``
is plain CSGM). The default engine composes the tail's forward and VJP graphs, the operator and the loss into one
ONNX Runtime session; ``--engine recovery-graph`` runs the whole recovery in one ONNX graph
(:mod:`gs_onnx.solve.methods.gs_graph`)."""
from __future__ import annotations

import numpy as np

from ..registry import Method, register
from ..skipprior import with_skip_prior
from ._restart import RESTART_SETTINGS, RestartSolver, skip_prior_for


class GSSolver(RestartSolver):
    """Generator Surgery: min_z ||A G_c(z) - y||^2 over the input of block c of the cut generator, from CN(0,1)
    starts, with the model's stopping plan and, where the cut frees a skip source, its prior."""

    planned = True
    warm_start = True

    def _template(self, y):
        from ..objective import make_objective, resolve_engine

        opts = {k: v for k, v in (("operator_on", self.s.operator_on), ("cuda_graph", self.s.cuda_graph))
                if v is not None}
        self.engine = resolve_engine(self.s.engine or "auto")
        obj = make_objective(self.man, self.cut, self.op, device=self.s.device, threads=self.s.threads,
                             engine=self.engine, **opts)
        self.size = obj.layout.size
        self.cut_inputs = list(obj.layout.names)
        self.skip_prior = skip_prior_for(self.man, self.cut, self.s)
        self.engine_objective = obj
        return with_skip_prior(obj, self.skip_prior).with_measurements(y)

    def _header(self):
        h = {"cut_inputs": self.cut_inputs, "free_values": self.size, "engine": self.engine}
        if self.skip_prior is not None and self.skip_prior.active:
            h["skip_prior"] = self.skip_prior.describe()
        eng = getattr(self.template, "engine", None)
        if eng is not None:
            h["engine_options"] = {"operator_on": eng.operator_on, "iobinding": eng.iobinding,
                                   "cuda_graph": eng.cuda_graph, "static_batch": eng.static_batch}
        return h


class RefinedGS(GSSolver):
    """GS, then a second stage on its images: subclasses give :meth:`refine_images` ``(images, fields, Y, first)``
    -> ``[(image, fields)]``, called once per image from :meth:`solve` and once for the whole batch from
    :meth:`solve_many` (GS's own batched run calls :meth:`solve` per image: the stage then waits for the batch)."""

    _inner = False  # True while GS's own solve_many calls solve

    def refine_images(self, images, fields, Y, first):
        raise NotImplementedError

    def solve(self, i, y, progress, restart: int | None = None, z0: np.ndarray | None = None, trace=None):
        image, fields = super().solve(i, y, progress, restart=restart, z0=z0, trace=trace)
        if self._inner:
            return image, fields
        ((out, f),) = self.refine_images([image], [fields], np.asarray(y, np.float32).reshape(1, -1), i)
        return out, f

    def solve_many(self, first: int, Y: np.ndarray, progress):
        self._inner = True
        try:
            out = super().solve_many(first, Y, progress)
        finally:
            self._inner = False
        return self.refine_images([im for im, _ in out], [f for _, f in out], np.asarray(Y, np.float32), first)


def make(y, sidecar, s, op=None):
    """gs's factory: the composed engine, or the recovery graph for ``--engine recovery-graph``."""
    from .gs_graph import GRAPH_ENGINE, GraphSolver

    if s.engine == GRAPH_ENGINE:
        return GraphSolver(y, sidecar, s, op)
    return GSSolver("gs", y, sidecar, s, op)


#: gs's settings: the restart methods' and the engine's.
GS_SETTINGS = RESTART_SETTINGS | {"batch", "batch_size", "engine", "operator_on", "cuda_graph", "skip_prior"}

METHOD = register(Method(
    "gs", "Generator Surgery, the cut generator's input fitted to the measurements (--cut 0: plain CSGM)", make,
    settings=GS_SETTINGS, generator=True, restarts=True, planned=True, batched=True, label="GS"))
