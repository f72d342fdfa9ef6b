"""Former home of the measurement operators, kept so that ``from gs_onnx.operator import ...`` goes on working:
everything here is defined in :mod:`gs_onnx.physics` (operators, their registry, noise).

:func:`make_operator` builds the compressed-sensing operators from ``(m, n, seed)``; for every operator type use
:func:`gs_onnx.physics.make` with an image shape.
"""
from __future__ import annotations

from .errors import GSError
from .physics import (MEMORY_SAFETY_FRACTION, ROWS_PER_BLOCK, GaussianOperator, IdentityOperator, Operator,  # noqa: F401
                      SubsampledDCTOperator, available_memory_bytes, dense_bytes)
from .physics import from_description as operator_from_description  # noqa: F401
from .physics.base import _probe  # noqa: F401


def make_operator(kind: str, m: int, n: int, seed: int, *, stream: bool = False,
                  image_shape=None) -> Operator:
    """A compressed-sensing operator ``gaussian`` (dense, N(0, 1/m)) or ``srdct`` (subsampled DCT) from
    ``(m, n, seed)``. ``stream`` makes a Gaussian A apply itself chunk by chunk without holding the matrix."""
    if kind == "gaussian":
        return GaussianOperator(m, n, seed, stream=stream, image_shape=image_shape)
    if kind == "srdct":
        return SubsampledDCTOperator(m, n, seed, image_shape=image_shape)
    raise GSError(f"make_operator builds gaussian or srdct from (m, n, seed), not {kind!r}: "
                  "use gs_onnx.physics.make(kind, image_shape, seed, **params)")
