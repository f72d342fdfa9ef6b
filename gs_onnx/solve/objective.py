"""The Generator Surgery objective f(z) = ||A G_c(z) - y||^2 / m and its gradient, and the one place
objectives are built.

Two engines compute it (:data:`ENGINES`): ``composed`` (:mod:`gs_onnx.engine.composed`: the whole objective
in one ONNX Runtime session, the default) and ``blocks`` (:class:`Objective`: the cut generator's sessions
block by block with the operator in numpy, the reference path and the fallback where the ``onnx`` package
is missing). Both run in float32 (ONNX Runtime, BLAS); scipy sees float64 values and gradients.
"""
from __future__ import annotations

import numpy as np

from ..engine.cut import CutGenerator
from ..errors import GSError
from ..generator.latent import LatentLayout
from ..generator.manifest import Manifest
from ..physics import Operator
from ..physics.base import as_operator
from ..physics.datafit import data_fit, data_term  # noqa: F401 - the data term objectives share

#: The engines that compute the objective; ``auto`` means ``composed`` where the onnx package is present.
ENGINES = ("composed", "blocks")
ENGINE_CHOICES = ("auto",) + ENGINES


class Objective:
    """f and its gradient for one measurement vector, block by block (the reference path).

    Parameters
    ----------
    gen : the cut generator; its image (B, C, H, W) in [0, 1] is flattened in C, H, W order
    op : measurement operator with ``op.n == C*H*W``
    y : measurements, (m,) float32
    w : row weights (m,): 1 fitted, 0 held out (default: every row fitted)

    Call ``value_and_grad(z)`` with z float64 (size,) (one restart); ``evaluations`` counts calls;
    ``held_out`` holds the held-out loss of the last evaluation's rows.
    """

    def __init__(self, gen: CutGenerator, op: Operator, y: np.ndarray, w: np.ndarray | None = None):
        self.gen, self.op = gen, as_operator(op, gen.image_shape)
        op = self.op
        self.y = np.asarray(y, dtype=np.float32).reshape(1, -1)
        self.layout = LatentLayout(gen.shapes)
        self.m = self.y.shape[1]
        if self.m != op.m:
            raise GSError(f"measurements have {self.m} values but the operator has m = {op.m}")
        if not np.isfinite(self.y).all():
            raise GSError("measurements contain NaN or Inf")
        self.w = None if w is None else np.asarray(w, dtype=np.float32).reshape(1, -1)
        if self.w is not None and self.w.shape != self.y.shape:
            raise GSError(f"row weights have {self.w.shape[1]} values for {self.m} measurements")
        self.evaluations = 0
        self.held_out: np.ndarray | None = None

    def with_measurements(self, y: np.ndarray, w: np.ndarray | None = None) -> "Objective":
        """The same generator and operator for other measurements ``y`` ((m,)) and row weights ``w``."""
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if y.size != self.m:
            raise GSError(f"measurements have {y.size} values, the objective {self.m}")
        return Objective(self.gen, self.op, y, w)

    @property
    def provider(self) -> str:
        return self.gen.provider

    def residual(self, x01: np.ndarray) -> np.ndarray:
        return self.op.forward(x01.reshape(x01.shape[0], -1)) - self.y

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """f(z) and df/dz for z of shape (size,) (float64 in, float64 out): a batch of one."""
        f, g = self.value_and_grad_batch(np.asarray(z).reshape(1, -1))
        return float(f[0]), g[0]

    def value_and_grad_batch(self, Z: np.ndarray, y: np.ndarray | None = None,
                             w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """f and df/dz for K latents at once, one batch through the graphs.

        Parameters
        ----------
        Z : (K, size) float64, one row per restart (or per image)
        y : (K, m) float32 measurements per row; default: this objective's ``y`` for every row
        w : (K, m) row weights per row; default: this objective's

        Returns
        -------
        f : (K,) float64; G : (K, size) float64 -- row k equals ``value_and_grad(Z[k])`` up to float32
        rounding (the batched graphs may sum in another order).
        """
        Z = np.atleast_2d(Z)
        self.evaluations += Z.shape[0]
        x01, env = self.gen.forward(self.layout.unpack(Z), keep=True)
        yy = self.y if y is None else np.asarray(y, dtype=np.float32).reshape(Z.shape[0], -1)
        f, self.held_out, gx = data_fit(self.op, x01.reshape(x01.shape[0], -1), yy, self.w if w is None else w)
        grads = self.gen.vjp(env, gx.reshape(x01.shape))
        return f, self.layout.pack(grads)

    def image(self, latents: dict[str, np.ndarray]) -> np.ndarray:
        """The cut generator's image in [0, 1] (unclamped), (B, C, H, W) float32."""
        return self.gen.forward(latents)

    def measurement_error(self, latents: dict[str, np.ndarray]) -> float:
        """||A clamp(G(z), 0, 1) - y||_2 over all rows for one image: the restart-selection criterion."""
        x = np.clip(self.image(latents), 0.0, 1.0)
        return float(np.linalg.norm(self.residual(x).astype(np.float64)))

    def value(self, z: np.ndarray) -> float:
        x01 = self.gen.forward(self.layout.unpack(z))
        return float(data_term(self.residual(x01), self.w)[0][0])


def resolve_engine(engine: str) -> str:
    if engine not in ENGINE_CHOICES:
        raise GSError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINE_CHOICES)}")
    if engine == "auto":
        from ..engine import merge

        return "composed" if merge.available() else "blocks"
    return engine


def make_objective(manifest: Manifest, cut: int, op: Operator, *, device: str = "auto", threads: int = 0,
                   engine: str = "auto", **options):
    """The GS objective of ``manifest`` cut at ``cut`` with operator ``op``, for measurements still to come:
    call ``.with_measurements(y)`` for each image (the sessions are shared).

    ``options`` go to :class:`gs_onnx.engine.composed.Engine` (``operator_on``, ``iobinding``,
    ``cuda_graph``, ``static_batch``); the ``blocks`` engine takes none.
    """
    engine = resolve_engine(engine)
    op = as_operator(op, manifest.image_shape)
    zeros = np.zeros(op.m, np.float32)
    if engine == "blocks":
        if options:
            raise GSError(f"the blocks engine takes no options ({', '.join(sorted(options))})")
        return Objective(CutGenerator(manifest, cut, device, threads), op, zeros)
    from ..engine.composed import ComposedObjective, Engine

    return ComposedObjective(Engine(manifest, cut, op, device, threads, **options), zeros)


def objective_for(gen: CutGenerator, op: Operator, *, engine: str = "auto", **options):
    """:func:`make_objective` for an existing cut generator (its model, cut, device and threads), kept on the
    generator so that the next call with the same operator reuses the sessions."""
    engine = resolve_engine(engine)
    op = as_operator(op, gen.image_shape)
    if engine == "blocks" and not options:
        return Objective(gen, op, np.zeros(op.m, np.float32))
    for o, e, opts, obj in gen._objectives:
        if o is op and e == engine and opts == options:
            return obj
    obj = make_objective(gen.manifest, gen.cut_index, op, device=gen.device, threads=gen.threads, engine=engine,
                         **options)
    gen._objectives[:] = gen._objectives[-3:] + [(op, engine, dict(options), obj)]
    return obj
