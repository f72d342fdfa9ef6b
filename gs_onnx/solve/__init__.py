"""The solvers: objectives, restarts, optimisers, stopping rules and the recovery methods. Imports the engine,
the physics, the generator and io; only the front ends (the experiments, the command line) import it.

* :mod:`~gs_onnx.solve.registry`: every ``--method`` behind one registry, each with its traits; :func:`make_solver`
  builds one for a measurement file (used by ``gs-recover``, the Python API and ``gs-experiment`` alike).
* :mod:`~gs_onnx.solve.settings`: :class:`Settings` and the budgets and stopping plans they resolve to.
* :mod:`~gs_onnx.solve.methods`: the built-in methods, one module each.
* :mod:`~gs_onnx.solve.objective`: the GS objective and :func:`make_objective`, the one place objectives are built.
* :mod:`~gs_onnx.solve.restart`: restarts (one image or a batch, sequential or lockstep, either optimiser).
* :mod:`~gs_onnx.solve.lbfgs`, :mod:`~gs_onnx.solve.adam`: the paper's torch L-BFGS and Adam semantics, batched.
* :mod:`~gs_onnx.solve.stopping`: held-out measurements and the models' stopping plans.
* :mod:`~gs_onnx.solve.mganprior`, :mod:`~gs_onnx.solve.lasso`, :mod:`~gs_onnx.solve.tv`: mGANprior's objective,
  Lasso-DCT, TV.
* :mod:`~gs_onnx.solve.skipprior`: the prior on a skip source a cut frees (BEGAN's lattice).
* :mod:`~gs_onnx.solve.recovery_graph`: the whole recovery as one ONNX graph.
"""
from . import methods  # noqa: F401 - registers the built-in methods
from .registry import AUTO, Method, available, make_solver, method, register, resolve_method, solve_many
from .settings import Settings

__all__ = ["AUTO", "Method", "Settings", "available", "make_solver", "method", "register", "resolve_method",
           "solve_many"]
