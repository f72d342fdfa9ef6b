"""PSNR of no surgery (c=0) vs the paper's cut with the torch reference (CPU or CUDA), for trained runs.

    python -m gs_export.eval_torch --run runs/h100/began --images DIR --n 20 --device cuda --out res.jsonl

Mirrors ``gs-measure`` + ``gs-recover`` exactly (same seeded A, noise stream, preprocessing, CN(0,1)
restarts seeded ``[seed + i, r]``, winner by measurement error, scipy L-BFGS-B) with the generator and A
evaluated by :class:`gs_export.reference.TorchObjective`. Writes one JSON line per (image, cut) as it
finishes and stops starting new images after ``--deadline`` seconds.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gs_onnx.io.images import list_images, load_image
from gs_onnx.physics import measure, paper_sigma
from gs_onnx.metrics import psnr
from gs_onnx.physics import GaussianOperator
from gs_onnx.solve.restart import Budget, run_restarts

from .architectures import build
from .exporter import default_recommended
from .reference import TorchObjective


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="gs-train run folder (generator.pt, train.json)")
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--ratio", type=float, default=0.1628)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--deadline", type=float, default=0.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t_start = time.time()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rec = json.loads((Path(a.run) / "train.json").read_text())
    gen = build(rec["arch"], **rec["config"])
    gen.load_state_dict(torch.load(Path(a.run) / "generator.pt", map_location="cpu", weights_only=True))
    gen.eval()
    shapes = gen.shapes()
    c, h, w = shapes["x"]
    n = c * h * w
    m = int(round(a.ratio * n))
    lo, hi = gen.output_range
    to_unit = (1.0 / (hi - lo), -lo / (hi - lo))
    files = list_images(a.images)[: a.n]
    xs = np.stack([load_image(p, h).reshape(-1) for p in files])
    op = GaussianOperator(m, n, a.seed)
    y = measure(xs, op, paper_sigma(n, m), a.seed)
    cut = default_recommended(rec["arch"])["cut"]
    budget = Budget(max_iter=a.max_iter, max_fun=int(a.max_iter * 1.25))
    objs = {cc: TorchObjective(gen, cc, op, y[0], to_unit, device=a.device) for cc in (0, cut)}
    dev = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    with open(a.out, "a") as f:
        for i, p in enumerate(files):
            if a.deadline and time.time() - t_start > a.deadline:
                break
            for cc in (0, cut):
                r = run_restarts(objs[cc].with_measurements(y[i]), restarts=a.restarts, budget=budget,
                                 seed=a.seed + i)
                f.write(json.dumps({"model": rec["arch"], "images": str(a.images), "index": i, "file": p.name,
                                    "cut": cc, "psnr": psnr(r.image, xs[i].reshape(c, h, w)),
                                    "measurement_error": r.measurement_error, "seconds": r.seconds,
                                    "evaluations": r.evaluations, "m": m, "n": n, "restarts": a.restarts,
                                    "max_iter": budget.max_iter, "max_fun": budget.max_fun,
                                    "device": dev, "torch": torch.__version__}) + "\n")
                f.flush()


if __name__ == "__main__":
    main()
