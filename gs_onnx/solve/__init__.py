"""The solvers: objectives, restarts, optimisers, stopping rules and the recovery methods. Imports the engine,
the physics, the generator and io; only the command line and the experiments import it.

* :mod:`~gs_onnx.solve.objective`: the GS objective and :func:`make_objective`, the one place objectives are built.
* :mod:`~gs_onnx.solve.restart`: restarts (one image or a batch, sequential or lockstep, either optimiser).
* :mod:`~gs_onnx.solve.lbfgs`: the paper's torch L-BFGS semantics, batched, in numpy or ONNX Runtime.
* :mod:`~gs_onnx.solve.stopping`: held-out measurements and the models' stopping plans.
* :mod:`~gs_onnx.solve.mganprior`, :mod:`~gs_onnx.solve.lasso`, :mod:`~gs_onnx.solve.tv`: mGANprior's objective, Lasso-DCT, TV.
* :mod:`~gs_onnx.solve.skipprior`: the prior on a skip source a cut frees (BEGAN's lattice).
* :mod:`~gs_onnx.solve.methods`: every ``--method`` behind one interface (the registry of methods), used by
  ``gs-recover``, the Python API and ``gs-experiment`` alike.
"""
