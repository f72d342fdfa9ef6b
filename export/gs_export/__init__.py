"""gs_export: the torch side of gs-onnx.

Architectures of the paper's generators as sequences of blocks, training code, checkpoint import, and the
export of every block as a forward and a vector-Jacobian (VJP) ONNX graph with a cut manifest. This package
may import :mod:`gs_onnx`; the runtime never imports this package or torch.
"""

import logging as _logging
import warnings as _warnings

# torch's ONNX exporter logs a line per optional torchvision operator it cannot register; they are not ours
# to show (the export works without torchvision), so its loggers are kept to errors.
for _name in ("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", module="torch.onnx")
_warnings.filterwarnings("ignore", module="onnxscript")
