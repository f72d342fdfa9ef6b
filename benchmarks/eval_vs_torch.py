"""One objective + gradient evaluation of GS: gs-onnx runtime vs torch eager, side by side in one process.

    python benchmarks/eval_vs_torch.py --model dcgan-digiface --cut 1 --ratio 0.1628 --batch 1

Both sides compute f(z) = ||A G_c(z) - y||^2 / m and df/dz from a float64 z (what scipy hands over):
the runtime through the exported forward + VJP graphs on ONNX Runtime and numpy BLAS for A; torch through
the same architecture (eval mode, same shapes; the torch side needs torch, the export extra) with autograd.
Weights are the model's own where the torch module can be rebuilt from its run folder, otherwise random
weights of the same architecture and shapes (the cost does not depend on the values); the output says which.
Writes a markdown row per configuration to stdout and, with --write, appends it to docs/benchmarks.md.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP threads must not spin against ORT's

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timeit(fn, repeats: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3, min(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dcgan-digiface")
    ap.add_argument("--cut", type=int, default=None)
    ap.add_argument("--ratio", type=float, default=0.1628)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", action="store_true", help="Append the rows to docs/benchmarks.md")
    args = ap.parse_args()

    import torch

    from gs_export.architectures import build
    from gs_onnx import registry
    from gs_onnx.cut import CutGenerator
    from gs_onnx.latent import init_latent
    from gs_onnx.objective import Objective
    from gs_onnx.operator import GaussianOperator

    man = registry.load(args.model)
    cut = man.recommended_cut if args.cut is None else args.cut
    gen = CutGenerator(man, cut, args.device)
    m = int(round(args.ratio * man.n))
    op = GaussianOperator(m, man.n, seed=0)
    rng = np.random.default_rng(0)
    y = op.forward(rng.random((1, man.n), dtype=np.float32))[0]
    obj = Objective(gen, op, y)
    z = init_latent("cn01", obj.layout.size, rng)[0]

    tgen = build(man.architecture, **man.config).eval()
    weights = "random (same architecture and shapes)"
    for p in tgen.parameters():
        p.requires_grad_(False)
    dev = torch.device("cuda" if args.device == "cuda" else "cpu")
    tgen.to(dev)
    A_t = torch.from_numpy(op.matrix()).to(dev)
    y_t = torch.from_numpy(y).to(dev)
    scale, shift = man.to_unit()
    shapes = obj.layout.shapes

    def torch_eval():
        zs = {n: torch.from_numpy(v).to(dev).requires_grad_(True)
              for n, v in obj.layout.unpack(z).items()}
        x = tgen.run(dict(zs), start=cut)["x"] * scale + shift
        r = A_t @ x.reshape(-1) - y_t
        f = (r * r).sum() / m
        grads = torch.autograd.grad(f, list(zs.values()))
        return float(f), np.concatenate([g.detach().cpu().numpy().astype(np.float64).ravel() for g in grads])

    def onnx_eval():
        return obj.value_and_grad(z)

    t_onnx, t_onnx_min = timeit(onnx_eval, args.repeats)
    t_torch, t_torch_min = timeit(torch_eval, args.repeats)
    t_onnx2, _ = timeit(onnx_eval, args.repeats, warmup=0)  # again, to expose drift
    hw = cpu_name() if args.device == "cpu" else torch.cuda.get_device_name()
    row = (f"| {man.name} | {cut} | {obj.layout.size} | {m} | {min(t_onnx, t_onnx2):.2f} | {t_torch:.2f} | "
           f"{min(t_onnx, t_onnx2) / t_torch:.2f} | {gen.provider} | torch {torch.__version__}, "
           f"{torch.get_num_threads()} threads | {hw} |")
    print("| model | cut | free values | m | runtime ms/eval | torch eager ms/eval | ratio | provider | torch | hardware |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(row)
    print(f"(medians of {args.repeats}; torch weights: {weights}; runtime second pass {t_onnx2:.2f} ms; "
          f"minima: runtime {t_onnx_min:.2f}, torch {t_torch_min:.2f})")
    if args.write:
        path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        with open(path, "a") as f:
            f.write(row + "\n")


if __name__ == "__main__":
    main()
