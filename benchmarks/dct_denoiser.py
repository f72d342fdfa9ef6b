"""The DCT denoiser (gs_onnx.engine.dct_denoiser) with and without its Wiener stage, against BM3D, as a denoiser
and inside plug-and-play (docs/results.md, "The DCT denoiser's second stage").

    python benchmarks/dct_denoiser.py denoise [--bm3d]
    python benchmarks/dct_denoiser.py pnp --model began --cond cs163 --split coco --images 100-104 --smin 0.005,0.003

``denoise``: COCO test photos 100-103 (outside the 100 test photos the tables use) and the first 3 CelebA train
faces, 128 px, white noise at sigma 0.005, 0.01, 0.03 and 0.1 (noise seed = the image's position); mean PSNR of the
noisy input, hard thresholding, with the Wiener stage, and with ``--bm3d`` BM3D (the optional ``bm3d`` package).
``pnp``: plain PnP with each form (``--forms hard,wiener``) on images measured as ``benchmarks/pnp_tune.py``
measures them, ``PLANS["dct"]``'s plan for the operator with each last noise level of ``--smin``; PSNR per image.
Needs ``../shared/data`` (or ``$GS_SHARED_DATA``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def denoise(a) -> None:
    from gs_onnx.engine.dct_denoiser import DCTDenoiser
    from gs_onnx.io.images import list_images, load_image
    from gs_onnx.metrics import psnr
    from pnp_tune import DATA

    sets = {"coco 100-103": [load_image(p, 128) for p in list_images(DATA / "coco/test")[100:104]],
            "train faces 0-2": [load_image(p, 128) for p in list_images(DATA / "celeba_aligned/train")[0:3]]}
    forms = {"hard": DCTDenoiser(threads=1, wiener=False), "wiener": DCTDenoiser(threads=1, wiener=True)}
    if a.bm3d:
        import bm3d
    for name, xs in sets.items():
        for s in (0.005, 0.01, 0.03, 0.1):
            res: dict = {k: [] for k in ["noisy", *forms, *(["bm3d"] if a.bm3d else [])]}
            for i, x in enumerate(xs):
                y = (x + s * np.random.default_rng(i).standard_normal(x.shape)).astype(np.float32)
                res["noisy"].append(psnr(y, x))
                for k, d in forms.items():
                    res[k].append(psnr(d(y[None], s)[0], x))
                if a.bm3d:
                    res["bm3d"].append(psnr(bm3d.bm3d_rgb(y.transpose(1, 2, 0), s).transpose(2, 0, 1), x))
            print(f"{name}  sigma {s}: " + "  ".join(f"{k} {np.mean(v):.2f}" for k, v in res.items()), flush=True)


def pnp(a) -> None:
    import pnp_tune as T
    from gs_onnx.engine.dct_denoiser import DCTDenoiser
    from gs_onnx.metrics import psnr
    from gs_onnx.solve.lasso import lipschitz
    from gs_onnx.solve.pnp import HOLDOUT, PATIENCE, Schedule, plan_for, pnp_batch
    from gs_onnx.solve.stopping import holdout_mask

    imgs = T.indices(a.images)
    probs = [T.problem(a.model, a.cond, a.split, i) for i in imgs]
    op = probs[0][1]
    plan = plan_for("dct", op.describe()["type"])
    Y = np.concatenate([p[3] for p in probs])
    X = np.stack([p[2] for p in probs])
    W = np.stack([holdout_mask(op.m, HOLDOUT, i) for i in imgs])
    L = lipschitz(op)
    for form in a.forms.split(","):
        d = DCTDenoiser(threads=1, wiener=form == "wiener")
        for s0 in (float(v) for v in a.smin.split(",")):
            t = time.perf_counter()
            res = pnp_batch(op, Y, X.shape[1:], d, Schedule(plan["iterations"], plan["sigma_max"], s0), w=W,
                            lipschitz=L, step=plan["step"], patience=PATIENCE)
            ps = [round(float(psnr(r.image, X[j])), 2) for j, r in enumerate(res)]
            print(f"{a.model} {a.cond} {a.split} {a.images} {form} sigma_min {s0}: mean {np.mean(ps):.3f} {ps} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["denoise", "pnp"])
    ap.add_argument("--bm3d", action="store_true")
    ap.add_argument("--model", default="began")
    ap.add_argument("--cond", default="cs163")
    ap.add_argument("--split", default="coco")
    ap.add_argument("--images", default="100-104")
    ap.add_argument("--smin", default="0.005")
    ap.add_argument("--forms", default="hard,wiener")
    a = ap.parse_args()
    denoise(a) if a.stage == "denoise" else pnp(a)


if __name__ == "__main__":
    main()
