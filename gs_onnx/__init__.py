"""gs-onnx: Generator Surgery recovery on ONNX Runtime, without torch.

The flat public API (numpydoc docstrings on each object):

Models and the cut generator
    :func:`load_model` (a model by name or folder, checksums verified), :class:`CutGenerator`,
    :func:`available_models`.
Physics: the measurement operator and measurement files
    :class:`GaussianOperator`, :class:`IdentityOperator`, :func:`operator_for` (A rebuilt from a sidecar),
    :func:`operator_from_description`, :func:`measure`, :func:`paper_sigma`, :func:`read_measurements`,
    :func:`write_measurements`.
Recovery
    :func:`make_objective` (the GS objective on the composed engine, or the per-block :class:`Objective`),
    :class:`MultiCodeObjective` (mGANprior), :func:`recover` (L-BFGS-B with restarts from a cut generator),
    :func:`run_restarts` and :func:`recover_batch` (any objective; one image, or many in lockstep batches),
    :class:`Budget`, :func:`lasso_dct`, :func:`psnr`.

Example: rebuild A from a measurement sidecar written by ``gs-measure`` and check a recovery

>>> import gs_onnx                                                   # doctest: +SKIP
>>> y, sidecar = gs_onnx.read_measurements("meas.npy")              # doctest: +SKIP
>>> A = gs_onnx.operator_for(sidecar)                               # doctest: +SKIP
>>> x = np.load("out/recovered.npy")                                 # doctest: +SKIP
>>> residual = A.forward(x.reshape(len(x), -1)) - y                  # doctest: +SKIP
"""
from ._version import __version__
from .cut import CutGenerator
from .errors import GSError
from .lasso import lasso_dct
from .manifest import Manifest
from .measurement import measure, operator_for, paper_sigma, read_measurements, write_measurements
from .metrics import psnr
from .mganprior import MultiCodeObjective
from .objective import Objective, make_objective
from .operator import (GaussianOperator, IdentityOperator, Operator, SubsampledDCTOperator, make_operator,
                       operator_from_description)
from .registry import available as available_models
from .registry import load as load_model
from .restart import Budget, Recovery, recover, recover_batch, run_restarts

__all__ = [
    "__version__",
    "Budget", "CutGenerator", "GSError", "GaussianOperator", "IdentityOperator", "Manifest", "MultiCodeObjective",
    "Objective", "Operator", "Recovery", "SubsampledDCTOperator", "available_models", "lasso_dct", "load_model",
    "make_objective", "make_operator", "measure",
    "operator_for", "operator_from_description", "paper_sigma", "psnr", "read_measurements", "recover",
    "recover_batch", "run_restarts", "write_measurements",
]
