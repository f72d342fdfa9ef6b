"""The built-in recovery methods, one module each; importing this package registers them all
(:mod:`gs_onnx.solve.registry`). A new method is one module here that ends with ``register(Method(...))`` and one
import line below (docs/architecture.md shows a worked example).

* :mod:`~gs_onnx.solve.methods.gs`: Generator Surgery (``gs``); :mod:`~gs_onnx.solve.methods.gs_graph`: gs in the
  recovery graph (``--engine recovery-graph``) and the inputs ``gs-export recovery`` writes;
* :mod:`~gs_onnx.solve.methods.gs_tv`: GS, then TV anchored to its image (``gs-tv``);
* :mod:`~gs_onnx.solve.methods.gs_pnp`: GS, then plug-and-play with the ONNX denoiser, plain or anchored to GS's
  image, chosen per image by held-out measurements (``gs-pnp``);
* :mod:`~gs_onnx.solve.methods.mganprior`: N codes composed at the cut (``mganprior``);
* :mod:`~gs_onnx.solve.methods.pnp`: plug-and-play with the ONNX denoiser (``pnp``) or BM3D (``pnp-bm3d``);
  :mod:`~gs_onnx.solve.methods.pnp_dct`: with sliding-window DCT thresholding, an ONNX graph (``pnp-dct``);
* :mod:`~gs_onnx.solve.methods.lasso_dct`, :mod:`~gs_onnx.solve.methods.tv`: the classical baselines.

What they share: :mod:`~gs_onnx.solve.methods._restart` (restarts from start latents) and
:mod:`~gs_onnx.solve.methods._image` (a prior solved on the image itself).
"""
from . import gs, gs_pnp, gs_tv, lasso_dct, mganprior, pnp, pnp_dct, tv  # noqa: F401 - each registers its method
