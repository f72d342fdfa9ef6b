"""gs-tv's weights for one model (its manifest's ``recommended.gs_tv``): on the first CelebA train faces, per
condition of the physics preset plus Gaussian compressed sensing at m/n 0.163, the mean PSNR of GS (the model's
stopping plan, as gs-recover runs it), of TV alone (lam / 3, lam, 3 lam) and of GS + TV (a grid of gamma).

    python benchmarks/gstv_weights.py MODEL [IMAGES] [CONDITIONS]     (needs ../shared/data or $GS_ONNX_DATA)

The GS images are kept in runs/gstv_weights/MODEL_<condition>.npz, so that a rerun re-grids without recovering
again. Prints one line per condition and, at the end, the JSON of the best (lam, gamma) per operator type.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("GS_ONNX_DATA", ROOT.parent / "shared" / "data"))
from gs_onnx.experiment.presets import PHYSICS_CONDITIONS
from gs_onnx.generator.registry import load
from gs_onnx.io.images import list_images, load_image
from gs_onnx.metrics import psnr
from gs_onnx.physics import make, measure, sigma_for
from gs_onnx.solve import Settings, make_solver
from gs_onnx.solve.tv import default_lam, tv_batch

model = sys.argv[1] if len(sys.argv) > 1 else "began"
k = int(sys.argv[2]) if len(sys.argv) > 2 else 3
man = load(model)
shape = tuple(man.image_shape)
folder = "celeba_crops64" if shape[1] == 64 else "celeba_aligned"
files = list_images(DATA / folder / "train")[:k]
X = np.stack([load_image(f, shape[1]) for f in files])
n = X[0].size
conds = dict(PHYSICS_CONDITIONS)
conds["cs0.163"] = ("gaussian", {"m": int(round(0.1628 * n))}, None)
conds["srdct0.163"] = ("srdct", {"m": int(round(0.1628 * n))}, None)
conds["srdct0.0488"] = ("srdct", {"m": int(round(0.0488 * n))}, None)
if len(sys.argv) > 3:
    conds = {c: conds[c] for c in sys.argv[3].split(",")}
GAMMAS = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
LAM_SCALES = [1 / 3, 1.0, 3.0]  # TV alone; GS + TV at the table's lam only (the anchor takes the weight)
cache = ROOT / "runs" / "gstv_weights"
cache.mkdir(parents=True, exist_ok=True)
best = {"lam": {}, "gamma": {}}
for name, (kind, params, sigma) in conds.items():
    op = make(kind, shape, 0, **params)
    s = sigma if sigma is not None else sigma_for("auto", op)
    Y = measure(X.reshape(len(X), -1), op, s, seed=0)
    f = cache / f"{model}_{name}_{k}.npz"
    if f.is_file():
        G = np.load(f, allow_pickle=False)["G"]
        gs_secs = float(np.load(f, allow_pickle=False)["seconds"])
    else:
        sidecar = {"model": model, "image_shape": list(shape), "operator": op.describe(), "m": op.m, "n": op.n}
        t = time.perf_counter()
        solver = make_solver("gs", Y, sidecar, Settings(model=model), op=op)
        G = np.stack([im for im, _ in solver.solve_many(0, Y, lambda *a: None)])
        gs_secs = (time.perf_counter() - t) / len(X)
        np.savez(f, G=G, seconds=gs_secs)
    gs = float(np.mean([psnr(g, x) for g, x in zip(G, X)]))
    lam0 = default_lam(kind)
    tv_row, gstv_row = [], []
    for sc in LAM_SCALES:
        lam = lam0 * sc
        t = time.perf_counter()
        res = tv_batch(op, Y, shape, lam)
        tv_row.append((round(lam, 5), round(float(np.mean([psnr(r.image, x) for r, x in zip(res, X)])), 2),
                       round((time.perf_counter() - t) / len(X), 1)))
        for g in GAMMAS if sc == 1.0 else ():
            t = time.perf_counter()
            res = tv_batch(op, Y, shape, lam, anchor=G, gamma=g)
            gstv_row.append((round(lam, 5), g, round(float(np.mean([psnr(r.image, x) for r, x in zip(res, X)])), 2),
                             round((time.perf_counter() - t) / len(X), 1)))
    b = max(gstv_row, key=lambda r: r[2])
    bt = max(tv_row, key=lambda r: r[1])
    best["lam"][kind], best["gamma"][kind] = b[0], b[1]
    print(f"{name} {kind} sigma {s:.4g}: GS {gs:.2f} ({gs_secs:.1f} s/face); TV best {bt}; GS+TV best {b}; "
          f"GS+TV at the default lam: {[r[1:3] for r in gstv_row if r[0] == round(lam0, 5)]}", flush=True)
print(json.dumps(best))
