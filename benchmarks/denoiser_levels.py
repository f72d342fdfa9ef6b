"""The denoiser against BM3D at the noise levels plug-and-play ends at (docs/results.md, the PnP section).

    python benchmarks/denoiser_levels.py runs/denoiser [--bm3d]

Denoises the first 8 faces of the validation split (CelebA aligned test images 100-107, 128 px) at sigma 0.005,
0.01, 0.02 and 0.05 (noise seed 1) with a gs-train denoiser run folder's network (torch), and with ``--bm3d`` the first
4 with BM3D (the optional ``bm3d`` package); prints the mean PSNR of the noisy input, of the network (all 8 and the
first 4) and of BM3D.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "export"))
DATA = Path(os.environ.get("GS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1 / float(np.mean((np.clip(a, 0, 1) - b) ** 2)))


def main() -> None:
    import torch
    from gs_export.denoiser import _one, load_trained
    from gs_onnx.io.images import list_images

    run = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "runs/denoiser"
    files = list_images(DATA / "celeba_aligned" / "test")[100:108]
    x = np.stack([_one(f) for f in files]).astype(np.float32) / 255.0
    net = load_trained(run)
    torch.set_num_threads(2)
    rng = np.random.default_rng(1)
    for s in (0.005, 0.01, 0.02, 0.05):
        y = x + s * rng.standard_normal(x.shape).astype(np.float32)
        with torch.no_grad():
            d = net(torch.from_numpy(y), torch.full((len(y), 1, 1, 1), s)).numpy()
        line = (f"sigma {s}: noisy {np.mean([psnr(y[i], x[i]) for i in range(len(x))]):.2f} "
                f"net {np.mean([psnr(d[i], x[i]) for i in range(len(x))]):.2f} "
                f"(first 4 {np.mean([psnr(d[i], x[i]) for i in range(4)]):.2f})")
        if "--bm3d" in sys.argv:
            import bm3d

            line += " bm3d (first 4) " + f"{np.mean([psnr(bm3d.bm3d_rgb(y[i].transpose(1, 2, 0), s).transpose(2, 0, 1), x[i]) for i in range(4)]):.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
