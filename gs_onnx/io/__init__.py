"""Input and output, the lowest layer above the basics (errors, metrics): it imports nothing else of gs_onnx.

* :mod:`~gs_onnx.io.images`: the one image decoder (preprocessing as the paper's), PNG writing, labelled grids.
* :mod:`~gs_onnx.io.measurement`: measurement files (``.npy`` + ``.json`` sidecar), written atomically and
  read back with every check; the physics a sidecar describes is rebuilt in :mod:`gs_onnx.physics.sidecar`.
* :mod:`~gs_onnx.io.publish`: the one way results are written (staged, then moved into place whole).
* :mod:`~gs_onnx.io.progress`: progress bars on a terminal.
"""
