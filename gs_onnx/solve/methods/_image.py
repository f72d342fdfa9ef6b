"""What the classical methods share (Lasso-DCT, TV): a prior solved on the image itself, no model; the images
of a chunk are solved together, sharing every application of A."""
from __future__ import annotations

import numpy as np

from ...errors import GSError
from ..settings import Settings


class ImageSolver:
    """A classical prior solved on the image itself (no model): the images of a chunk are solved together,
    sharing every application of A. Subclasses set ``how``, ``header`` (after :meth:`_setup`) and
    ``_batch(Y, callback, first) -> [(image (C, H, W) in [0, 1], fields)]`` (``first``: the index of Y's first image
    in the file, which seeds what is drawn per image)."""

    unit = "iterations"
    batch = "images"

    def _setup(self, sidecar: dict, s: Settings, op, max_iter: int) -> None:
        from ...physics import operator_for
        from ..lasso import lipschitz

        self.shape = tuple(int(v) for v in sidecar.get("image_shape", []))
        if len(self.shape) != 3:
            raise GSError("the sidecar has no image_shape (C, H, W)")
        self.op = operator_for(sidecar) if op is None else op
        if self.op.n != int(np.prod(self.shape)):
            raise GSError(f"measurements are for n = {self.op.n} but the sidecar's image shape has "
                          f"{int(np.prod(self.shape))}")
        self.max_iter = max_iter if s.max_iter is None else s.max_iter
        self.batch_size = 8 if s.batch_size is None else s.batch_size
        self.L = lipschitz(self.op)

    def solve(self, i, y, progress):
        ((image, fields),) = self.solve_many(i, np.asarray(y).reshape(1, -1), lambda _i, f, w: progress(f, w))
        return image, fields

    def solve_many(self, first: int, Y: np.ndarray, progress):
        Y = np.asarray(Y, np.float32).reshape(-1, self.op.m)

        def cb(it, obj):
            for j in range(len(Y)):
                progress(first + j, it / self.max_iter, f"iteration {it}, objective {obj[j]:.4g}")

        return self._batch(Y, cb, first)
