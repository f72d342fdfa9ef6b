"""The classical methods' weight per operator (TV: gs_onnx.solve.tv.LAM; Lasso-DCT: gs_onnx.solve.lasso.LAM):
mean PSNR over the first 3 CelebA train faces for each weight of a grid, per condition of the physics preset plus
Gaussian compressed sensing at m/n 0.163 and 0.0488.

    python benchmarks/tv_weights.py [64|128] [tv|lasso] [CONDITIONS]     (needs ../shared/data or $GS_ONNX_DATA)
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
from gs_onnx.io.images import list_images, load_image
from gs_onnx.physics import make, measure, sigma_for
from gs_onnx.experiment.presets import PHYSICS_CONDITIONS
from gs_onnx.solve.lasso import lasso_dct_batch
from gs_onnx.solve.tv import tv_batch
from gs_onnx.metrics import psnr

size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
method = sys.argv[2] if len(sys.argv) > 2 else "tv"
solve = {"tv": tv_batch, "lasso": lasso_dct_batch}[method]
folder = "celeba_crops64" if size == 64 else "celeba_aligned"
files = list_images(DATA / folder / "train")[:3]
X = np.stack([load_image(f, size) for f in files]); shape = X[0].shape; n = X[0].size
conds = dict(PHYSICS_CONDITIONS)
conds["cs0.163"] = ("gaussian", {"m": int(round(0.1628 * n))}, None)
conds["cs0.0488"] = ("gaussian", {"m": int(round(0.0488 * n))}, None)
if len(sys.argv) > 3:
    conds = {c: conds[c] for c in sys.argv[3].split(",")}
LAMS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.2, 0.3, 1.0]
out = {}
for name, (kind, params, sigma) in conds.items():
    op = make(kind, shape, 0, **params)
    s = sigma if sigma is not None else sigma_for("auto", op)
    Y = measure(X.reshape(len(X), -1), op, s, seed=0)
    row = []
    for lam in LAMS:
        t = time.time()
        res = solve(op, Y, shape, lam)
        ps = np.mean([psnr(r.image, x) for r, x in zip(res, X)])
        row.append((lam, round(float(ps), 2), int(np.mean([r.iterations for r in res])), round(time.time() - t, 1)))
    best = max(row, key=lambda r: r[1])
    out[name] = best[0]
    print(name, kind, params, "sigma", round(s, 4), row, "best", best, flush=True)
print(json.dumps(out))
