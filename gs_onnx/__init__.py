"""gs-onnx: Generator Surgery recovery on ONNX Runtime, without torch.

The flat public API (numpydoc docstrings on each object). The packages are layers, each importing only the
ones below it (docs/architecture.md): ``cli``/``experiment`` -> ``solve`` -> ``engine`` -> ``physics`` and
``generator`` -> ``io`` -> the basics (``errors``, ``metrics``).

Models and the cut generator
    :func:`load_model` (a model by name or folder, checksums verified), :class:`CutGenerator`,
    :func:`available_models`.
Physics (:mod:`gs_onnx.physics`): operators and noise
    :class:`GaussianOperator`, :class:`SubsampledDCTOperator` (compressed sensing), :class:`IdentityOperator`
    (denoising), :class:`Mask`, :class:`Box` (inpainting), :class:`Downsample` (super-resolution),
    :class:`Fourier` (subsampled DFT), :class:`Blur` (deblurring), :class:`Compose`, :class:`FunctionOperator`
    (your own), :func:`make_physics` (an operator by type name), :func:`check_operator`,
    :func:`operator_from_description`, :func:`measure`, :func:`paper_sigma`.
Measurement files
    :func:`read_measurements`, :func:`write_measurements`, :func:`operator_for` (A rebuilt from a sidecar).
Recovery
    :func:`make_objective` (the GS objective on the composed engine, or the per-block :class:`Objective`),
    :class:`MultiCodeObjective` (mGANprior), :func:`recover` (L-BFGS-B with restarts from a cut generator),
    :func:`run_restarts` and :func:`recover_batch` (any objective; one image, or many in lockstep batches),
    :class:`Budget`, :func:`lasso_dct`, :func:`psnr`.

Example: inpaint a bundled face (30 % of the pixels kept) with the shipped DCGAN cut at block 1

>>> import numpy as np, gs_onnx
>>> from importlib.resources import files
>>> from gs_onnx.io.images import load_image
>>> model = gs_onnx.load_model("dcgan")
>>> x = load_image(files("gs_onnx") / "samples" / "celeba64_182638.jpg", 64)          # (3, 64, 64) in [0, 1]
>>> A = gs_onnx.Mask(model.image_shape, keep=0.3, seed=0)
>>> y = gs_onnx.measure(x.reshape(1, -1), A, sigma=0.01, seed=0)[0]
>>> rec = gs_onnx.recover(gs_onnx.CutGenerator(model, 1, device="cpu"), A, y, restarts=1,
...                       budget=gs_onnx.Budget(max_iter=60, max_fun=80))
>>> rec.image.shape, bool(gs_onnx.psnr(rec.image, x) > 22)
((3, 64, 64), True)
"""
from ._version import __version__
from .engine.cut import CutGenerator
from .errors import GSError
from .generator.manifest import Manifest
from .generator.registry import available as available_models
from .generator.registry import load as load_model
from .io.measurement import read_measurements, write_measurements
from .metrics import psnr
from .physics import (Blur, Box, Compose, Downsample, Fourier, FunctionOperator, GaussianOperator, IdentityOperator,
                      Mask, Operator, SubsampledDCTOperator, check_operator, make_operator, measure, operator_for,
                      paper_sigma)
from .physics import from_description as operator_from_description
from .physics import make as make_physics
from .solve.lasso import lasso_dct
from .solve.mganprior import MultiCodeObjective
from .solve.objective import Objective, make_objective
from .solve.restart import Budget, Recovery, recover, recover_batch, run_restarts

__all__ = [
    "__version__",
    "Blur", "Box", "Budget", "Compose", "CutGenerator", "Downsample", "Fourier", "FunctionOperator", "GSError",
    "GaussianOperator", "IdentityOperator", "Manifest", "Mask", "MultiCodeObjective",
    "Objective", "Operator", "Recovery", "SubsampledDCTOperator", "available_models", "check_operator",
    "lasso_dct", "load_model", "make_objective", "make_operator", "make_physics", "measure",
    "operator_for", "operator_from_description", "paper_sigma", "psnr", "read_measurements", "recover",
    "recover_batch", "run_restarts", "write_measurements",
]
