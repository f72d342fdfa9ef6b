"""PSNR of no surgery (c=0) vs surgery (the model's cut) on the first N images of a folder, via the CLIs.

    python benchmarks/gs_vs_nogs.py --model dcgan-digiface --images ../shared/data/celeba_crops64/test \
        --n 20 --ratio 0.1628 --out runs/gs_vs_nogs

Runs exactly what a user runs: gs-measure once, then gs-recover at c=0 and at the recommended cut with
--reference, and prints a markdown table of mean +- std PSNR and seconds per image from the reports.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dcgan-digiface")
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--ratio", type=float, default=0.1628)
    ap.add_argument("--cuts", default=None, help="Comma-separated cuts (default: 0 and the recommended cut).")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/gs_vs_nogs")
    a = ap.parse_args()
    from gs_onnx.generator import registry
    from gs_onnx.io.images import list_images

    man = registry.load(a.model)
    cuts = [int(c) for c in a.cuts.split(",")] if a.cuts else [0, man.recommended_cut]
    imgs = [str(p) for p in list_images(a.images)[: a.n]]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meas = out / "meas.npy"
    subprocess.run([BIN / "gs-measure", *imgs, "--model", a.model, "--ratio", str(a.ratio), "--seed", str(a.seed),
                    "-o", meas], check=True)
    rows = []
    for c in cuts:
        cmd = [BIN / "gs-recover", meas, "--model", a.model, "--cut", str(c), "-o", out / f"cut{c}",
               "--restarts", str(a.restarts), "--seed", str(a.seed), "--no-progress"]
        if a.max_iter:
            cmd += ["--max-iter", str(a.max_iter)]
        for p in imgs:
            cmd += ["--reference", p]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rep = json.loads((out / f"cut{c}" / "report.json").read_text())
        ps = np.array([r["psnr"] for r in rep["images"]])
        secs = np.array([r["seconds"] for r in rep["images"]])
        ev = np.array([r["evaluations"] for r in rep["images"]])
        rows.append(f"| {a.model} | {Path(a.images).name} (first {len(imgs)}) | {rep['m']} ({rep['m'] / rep['n']:.3f}) "
                    f"| {c} | {rep['free_values']} | {ps.mean():.2f} +- {ps.std():.2f} | {secs.mean():.1f} "
                    f"| {ev.mean():.0f} | {rep['budget']['max_iter']} it / {rep['budget']['max_fun']} ev x "
                    f"{rep['restarts']} restarts | {rep['provider']} |")
    print("| model | images | m (m/n) | cut | free values | PSNR dB (mean +- std) | s / image | evaluations / image | budget | provider |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
