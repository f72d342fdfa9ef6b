"""Sample grids from a model and from its cut generators (the paper's Fig. 8), with the ONNX runtime.

    python benchmarks/cut_samples.py --model began --cuts 0,1,2,3 --out docs/samples

Cut 0 draws latents from the model's prior (N(0,1) or U(-1,1)); a cut c >= 1 feeds every free input with
CN(0,1) values (N(0,1) clipped to [-1, 1], the paper's initialisation): a cut generator is no longer a
generative model, and these grids show what it makes of inputs that are not its head's activations.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gs_onnx.generator import registry
from gs_onnx.engine.cut import CutGenerator
from gs_onnx.io.images import grid, save_png
from gs_onnx.generator.latent import LatentLayout, init_latent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--cuts", default="0,1,2,3")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--ncol", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/samples")
    a = ap.parse_args()
    man = registry.load(a.model)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for c in [int(v) for v in a.cuts.split(",")]:
        gen = CutGenerator(man, c, "cpu")
        lay = LatentLayout(gen.shapes)
        rng = np.random.default_rng([a.seed, c])
        if c == 0:
            z = (rng.uniform(-1, 1, (a.n, lay.size)) if man.latent_prior == "uniform"
                 else rng.standard_normal((a.n, lay.size)))
        else:
            z = init_latent("cn01", lay.size, rng, a.n)
        x = np.clip(gen.forward(lay.unpack(z)), 0, 1)
        path = out / f"{man.name}_cut{c}.png"
        save_png(grid(list(x), a.ncol), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
