"""gs-onnx: Generator Surgery recovery on ONNX Runtime, without torch."""
