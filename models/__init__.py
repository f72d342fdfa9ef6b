"""The models shipped with gs-onnx, installed as package data (``gs_onnx_models``): one folder per model with
its manifest.json, per-block ONNX graphs and weights. :mod:`gs_onnx.generator.registry` finds them here."""
