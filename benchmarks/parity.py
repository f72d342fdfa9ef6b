"""ONNX GS vs torch GS on the same measurements, 1 restart, short budgets: where L-BFGS-B trajectories have not
yet diverged, the two runtimes give the same recovery.

    python benchmarks/parity.py        # reads the measurements benchmarks/baselines.py wrote under runs/baselines

Prints and writes runs/parity_short.json: mean and max |PSNR(ONNX) - PSNR(torch)| over the 10 images per
ratio after 10, 30 and 100 iterations (model dcgan, cut 1, restart 0's CN(0,1) start, seeds as gs-recover).
"""
from __future__ import annotations

import json

import numpy as np

from gs_export.from_onnx import torch_generator
from gs_export.reference import TorchObjective
from gs_onnx.generator import registry
from gs_onnx.engine.cut import CutGenerator
from gs_onnx.io.measurement import read_measurements
from gs_onnx.physics import operator_for
from gs_onnx.solve.restart import Budget, recover, run_restarts
from gs_onnx.solve.stopping import PAPER
from gs_onnx.io.images import load_image
from gs_onnx.metrics import psnr

out = {}
for ratio in ("0.0488", "0.163"):
    y, sc = read_measurements(f"runs/baselines/ratio{ratio}/meas.npy")
    op = operator_for(sc); man = registry.load("dcgan")
    gen = CutGenerator(man, 1, "cpu"); tobj = TorchObjective(torch_generator(man), 1, op, y[0], man.to_unit())
    refs = [load_image(s["path"], 64) for s in sc["sources"]]
    for its in (10, 30, 100):
        b = Budget(max_iter=its, max_fun=int(its * 1.25))
        d = []
        for i in range(y.shape[0]):
            r1 = recover(gen, op, y[i], restarts=1, budget=b, seed=i, stop=PAPER)
            r2 = run_restarts(tobj.with_measurements(y[i]), restarts=1, budget=b, seed=i)
            d.append(abs(psnr(r1.image, refs[i]) - psnr(r2.image, refs[i])))
        out[f"{ratio}_{its}"] = {"mean_abs_diff": float(np.mean(d)), "max": float(np.max(d))}
        print(ratio, its, out[f"{ratio}_{its}"], flush=True)
json.dump(out, open("runs/parity_short.json", "w"), indent=1)
