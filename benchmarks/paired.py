"""Paired comparison of two gs-recover reports on the same measurements: per-image PSNR gain.

    python benchmarks/paired.py runs/i3/dcgan_celeba/cut0/report.json runs/i3/dcgan_celeba/cut1/report.json
"""
from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    pa = np.array([r["psnr"] for r in a["images"]])
    pb = np.array([r["psnr"] for r in b["images"]])
    d = pb - pa
    print(f"{len(d)} images: gain {d.mean():+.2f} +- {d.std():.2f} dB, min {d.min():+.2f}, "
          f"better on {(d > 0).sum()}/{len(d)}")


if __name__ == "__main__":
    main()
