"""Image priors for plug-and-play: a denoiser ``D(z (B, C, H, W), sigma (B,)) -> (B, C, H, W)`` by name.

* ``onnx`` (the default): the denoiser shipped in ``models/priors/`` (or ``--denoiser NAME_OR_FOLDER``), on ONNX
  Runtime like the generators (:class:`gs_onnx.engine.denoiser.Denoiser`);
* ``dct``: sliding-window DCT hard thresholding and Wiener filtering
  (:class:`gs_onnx.engine.dct_denoiser.DCTDenoiser`), a classical
  denoiser with no training and no weights, built as an ONNX graph (so it runs wherever the recovery runs);
* ``bm3d``: BM3D (Dabov et al. 2007; Makinen et al. 2020) from the ``bm3d`` package, the classical baseline
  (``pip install 'gs-onnx[bm3d]'``; its licence allows non-commercial use only, so it is never a dependency).
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError


class BM3D:
    """BM3D as a denoiser callable (per image, in the opponent colour space, the ``np`` profile)."""

    provider = "bm3d (CPU)"

    def __init__(self):
        try:
            import bm3d  # noqa: F401
        except ImportError as e:
            raise GSError(f"--method pnp-bm3d needs the bm3d extra (BM3D, non-commercial licence): pip install "
                          f"'gs-onnx[bm3d]' ({e})") from None
        self.calls = 0

    def describe(self) -> dict:
        import bm3d

        return {"name": "bm3d", "version": getattr(bm3d, "__version__", None), "profile": "np",
                "provider": self.provider}

    def __call__(self, z: np.ndarray, sigma) -> np.ndarray:
        import bm3d

        z = np.asarray(z, np.float32)
        s = np.broadcast_to(np.asarray(sigma, np.float64).reshape(-1), (len(z),))
        out = np.empty_like(z)
        for i in range(len(z)):
            img = z[i].transpose(1, 2, 0).astype(np.float64)
            d = bm3d.bm3d_rgb(img, float(s[i])) if z.shape[1] == 3 else bm3d.bm3d(img, float(s[i]))
            out[i] = np.asarray(d, np.float32).reshape(img.shape).transpose(2, 0, 1)
        self.calls += len(z)
        return out


def denoiser_for(kind: str, name: str | None = None, device: str = "auto", threads: int = 0,
                 models_dir: str | None = None, flip: bool | None = None):
    """The denoiser callable of ``kind`` (``onnx``, ``dct`` or ``bm3d``); ``name``: the ONNX denoiser's name or folder;
    ``flip``: the ONNX denoiser's mirror self-ensemble (default :data:`gs_onnx.solve.pnp.FLIP`)."""
    if kind == "bm3d":
        if name is not None:
            raise GSError("--denoiser names an ONNX denoiser: it does not apply to --method pnp-bm3d")
        return BM3D()
    if kind == "dct":
        if name is not None:
            raise GSError("--denoiser names an ONNX denoiser: it does not apply to --method pnp-dct")
        from ..engine.dct_denoiser import DCTDenoiser

        return DCTDenoiser(device=device, threads=threads)
    if kind != "onnx":
        raise GSError(f"unknown denoiser kind {kind!r}")
    from ..engine.denoiser import Denoiser
    from ..generator.denoiser import find_denoiser
    from .pnp import FLIP

    return Denoiser(find_denoiser(name, models_dir), device=device, threads=threads, flip=FLIP if flip is None else flip)


def classical_candidates(operator: str | None, device: str = "auto", threads: int = 0) -> list[tuple[str, object, dict]]:
    """(name, denoiser, plan) of each classical candidate gs-pnp adds for an operator type
    (:func:`gs_onnx.solve.pnp.classical_for`): ``pnp-KIND``, the denoiser, and plain PnP's plan for it
    (:data:`gs_onnx.solve.pnp.PLANS`)."""
    from .pnp import classical_for, plan_for

    return [(f"pnp-{k}", denoiser_for(k, None, device, threads), plan_for(k, operator)) for k in classical_for(operator)]
