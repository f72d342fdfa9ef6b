"""The recovery engine: ONNX Runtime sessions, device handling, and the composed objective graph.

* :mod:`~gs_onnx.engine.runtime`: devices (a registry), session options, the one session factory, device truth.
* :mod:`~gs_onnx.engine.merge`: the tail of a cut generator as one forward and one VJP graph.
* :mod:`~gs_onnx.engine.graph`: the whole GS objective (tail, mapping to [0, 1], operator, residual, loss,
  adjoint, VJP) composed into one ONNX graph.
* :mod:`~gs_onnx.engine.composed`: that graph in one session with IOBinding: the default objective.
"""
