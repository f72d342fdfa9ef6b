"""What a model folder is and how it is read: the prior's static side. Imports only :mod:`gs_onnx.io` and the
basics; running the blocks is the engine's job (:mod:`gs_onnx.engine`).

* :mod:`~gs_onnx.generator.manifest`: ``manifest.json`` loaded against its schema, every path confined to the
  model folder, every file's sha256 verified.
* :mod:`~gs_onnx.generator.registry`: models by name (``--models-dir``, ``$GS_ONNX_MODELS``, the shipped ones).
* :mod:`~gs_onnx.generator.latent`: the cut's inputs: initialisations and packing into one vector.
"""
