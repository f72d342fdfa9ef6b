"""``pnp-dct``: plug-and-play with a classical denoiser that needs no training and no licence beyond this project's:
sliding-window DCT hard thresholding, then an empirical Wiener stage (:mod:`gs_onnx.engine.dct_denoiser`), an ONNX
graph on ONNX Runtime. It knows nothing of faces: on photos under Gaussian measurements it is within a few tenths
of a dB of PnP-BM3D, where the face-trained network falls 1 dB short, and on began's test faces at m/n 0.163 it is
above both (docs/results.md). :mod:`gs_onnx.solve.pnp` has the algorithm and the plans."""
from __future__ import annotations

from ..registry import Method, register
from .pnp import PnPSolver


class PnPDCTSolver(PnPSolver):
    kind = "dct"


METHOD = register(Method(
    "pnp-dct", "plug-and-play with sliding-window DCT thresholding and Wiener filtering, a classical denoiser as an "
               "ONNX graph (no generator, no training)", PnPDCTSolver,
    settings=frozenset({"max_iter", "batch_size"}), batched=True, label="PnP-DCT"))
