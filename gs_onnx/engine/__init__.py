"""The engine: the generator's blocks and the whole objective run on ONNX Runtime. Imports the physics (operators
as ONNX nodes), the generator (model folders) and io; the solvers import it, never the reverse.

* :mod:`~gs_onnx.engine.runtime`: devices (a registry), session options, the one session factory, device truth.
* :mod:`~gs_onnx.engine.block`, :mod:`~gs_onnx.engine.cut`: one block's sessions; the cut generator G_c.
* :mod:`~gs_onnx.engine.merge`: the tail of a cut generator as one forward and one VJP graph.
* :mod:`~gs_onnx.engine.graph`: the whole GS objective (tail, mapping to [0, 1], operator, residual, loss,
  adjoint, VJP) composed into one ONNX graph.
* :mod:`~gs_onnx.engine.composed`: that graph in one session with IOBinding: the default objective.
"""
