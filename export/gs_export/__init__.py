"""gs_export: the torch side of gs-onnx.

Architectures of the paper's generators as sequences of blocks, training code, checkpoint import, and the
export of every block as a forward and a vector-Jacobian (VJP) ONNX graph with a cut manifest. This package
may import :mod:`gs_onnx`; the runtime never imports this package or torch.
"""
