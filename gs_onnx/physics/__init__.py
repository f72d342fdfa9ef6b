"""The physics: measurement operators ``A``, noise, the data-fidelity term and operators as ONNX nodes, kept
apart from the priors (models, cut generators, engines) and the solvers: imports only :mod:`gs_onnx.io` and the
basics; the engine and the solvers import it.

Operators (:class:`Operator`) are linear maps from images (C, H, W) to measurements, with shapes, adjoints
(``A.H``), composition (``A @ B``), a description that rebuilds them bit for bit, a memory estimate, an ONNX
form for the composed objective graph and a preview image of their measurements. One registry
(:func:`registry`) drives ``gs-measure --operator``, the sidecar and the experiments:

=============  ===================================================================  ==========================
type           what                                                                 noise default
=============  ===================================================================  ==========================
gaussian       dense N(0, 1/m) matrix, m free (the paper's compressed sensing)      paper rule
srdct          subsampled randomized DCT, m free (O(n log n))                       paper rule
identity       denoising                                                            0.01 per value
mask           inpainting of random pixels (``keep``)                               0.01 per value
box            inpainting of a missing rectangle                                    0.01 per value
downsample     super-resolution by an integer ``factor`` (area, or anti-aliased)    0.01 per value
fourier        subsampled 2-D DFT per channel (``keep``, ``density``)                0.01 per value
blur           Gaussian blur of std ``sigma`` (zero boundary)                       0.01 per value
=============  ===================================================================  ==========================

Your own operator: subclass :class:`Operator` (``_forward``, ``_adjoint``, ``describe``; ``register`` it to
rebuild it from sidecars and measure with it from the command line), or wrap two functions in
:class:`FunctionOperator`; :func:`check_operator` tests either (docs/physics.md).

Examples
--------
>>> import numpy as np
>>> from gs_onnx.physics import make, check_operator
>>> A = make("downsample", (3, 64, 64), factor=4)
>>> A.describe()["type"], A.out_shape
('downsample', (3, 16, 16))
>>> check_operator(A)["adjoint_rel_err"] < 1e-6
True
"""
from .base import (Adjoint, Compose, FunctionOperator, Operator, Param, from_description, make, measuring_types,
                   operator_class, register, registry)
from .cs import (GaussianOperator, SubsampledDCTOperator, available_memory_bytes, dense_bytes, make_operator,
                 MEMORY_SAFETY_FRACTION, ROWS_PER_BLOCK)
from .image import Blur, Box, Downsample, IdentityOperator, Mask
from .fourier import Fourier
from .checks import check_operator
from .noise import measure, noise_sigma, paper_sigma, sigma_for
from .sidecar import operator_for, sidecar_fields

__all__ = [
    "Adjoint", "Blur", "Box", "Compose", "Downsample", "Fourier", "FunctionOperator", "GaussianOperator",
    "IdentityOperator", "Mask", "Operator", "Param", "SubsampledDCTOperator", "available_memory_bytes",
    "check_operator", "dense_bytes", "from_description", "make", "make_operator", "measure", "measuring_types", "noise_sigma",
    "operator_class", "operator_for", "sidecar_fields", "paper_sigma", "register", "registry", "sigma_for", "MEMORY_SAFETY_FRACTION",
    "ROWS_PER_BLOCK",
]
