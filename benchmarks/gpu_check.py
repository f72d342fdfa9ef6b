"""Recovery-level GPU measurements for benchmarks/gpu_check.sh (and their CPU reference).

    python benchmarks/gpu_check.py prepare --out .devdata          # here: 10 CelebA test faces + the CPU reference
    python benchmarks/gpu_check.py run --data .devdata --device cuda --out RESULTS/check.json

``prepare`` (on the machine that has ../shared/data) writes ``faces.npy`` (the first 10 faces of
celeba_crops64/test, preprocessed as gs-measure does) and ``face128.npy`` (the first face of celeba_aligned/test
at 128 px) into ``--out`` and, with ``--reference``, the CPU numbers
of the parity run to ``benchmarks/gpu_reference_cpu.json`` (committed: the GPU run is compared with them).

``run`` measures, on ``--device``:

* ``parity``: GS recovery of the 10 faces (dcgan c=1, m/n = 0.1628, paper noise, 3 restarts x 100 L-BFGS-B
  iterations, seeds 0..9, batch ``none``): PSNR per image, and against the committed CPU run the mean and max
  absolute difference;
* ``paper``: the wall time of one image at the paper budget (3 restarts x 500 iterations; restarts batched)
  for dcgan c=1 and began c=2, with the share spent evaluating the objective (the rest is scipy's own work);
* ``throughput``: DCGAN c=1 images per second at the paper budget with images and restarts in one lockstep
  batch (``--throughput-images`` images x 3 restarts), for each optimiser the repository has.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "benchmarks" / "gpu_reference_cpu.json"
PARITY = {"model": "dcgan", "cut": 1, "ratio": 0.1628, "restarts": 3, "max_iter": 100, "images": 10, "seed": 0}


def _optimizers() -> list[str]:
    from gs_onnx.solve import restart

    return list(getattr(restart, "OPTIMIZERS", ("scipy",)))


def _problem(model: str, ratio: float, faces: np.ndarray, seed: int = 0):
    from gs_onnx.generator import registry
    from gs_onnx.physics import measure, paper_sigma
    from gs_onnx.physics import GaussianOperator

    man = registry.load(model)
    m = int(round(ratio * man.n))
    op = GaussianOperator(m, man.n, seed)
    xs = faces.reshape(len(faces), -1)
    Y = np.stack([measure(xs[i:i + 1], op, paper_sigma(man.n, m), seed + i)[0] for i in range(len(xs))])
    return man, op, Y


def parity(faces: np.ndarray, device: str) -> dict:
    from gs_onnx.metrics import psnr
    from gs_onnx.solve.objective import make_objective
    from gs_onnx.solve.restart import Budget, recover_batch

    p = PARITY
    man, op, Y = _problem(p["model"], p["ratio"], faces[:p["images"]], p["seed"])
    obj = make_objective(man, p["cut"], op, device=device)
    b = Budget(max_iter=p["max_iter"], max_fun=int(p["max_iter"] * 1.25))
    t = time.perf_counter()
    recs = recover_batch(obj, Y, restarts=p["restarts"], budget=b, seeds=[p["seed"] + i for i in range(len(Y))],
                         batch="none")
    ps = [psnr(r.image, faces[i]) for i, r in enumerate(recs)]
    return {**p, "device": device, "provider": obj.provider, "psnr": ps, "mean_psnr": float(np.mean(ps)),
            "seconds": time.perf_counter() - t}


def paper_budget(model: str, cut: int, face: np.ndarray, device: str) -> list[dict]:
    """One image at the paper's budget (3 restarts x 500 iterations, every measurement fitted), restarts
    batched, with each optimiser: wall time and the share outside the objective (the optimiser's own work)."""
    from gs_onnx.solve.settings import PAPER_LR
    from gs_onnx.metrics import psnr
    from gs_onnx.solve.objective import make_objective
    from gs_onnx.solve.restart import Budget, lbfgs_settings, recover_batch
    from gs_onnx.solve.stopping import PAPER

    man, op, Y = _problem(model, 0.1628, face[None])
    obj = make_objective(man, cut, op, device=device)
    b = Budget()
    out = []
    for opt in _optimizers():
        lb = lbfgs_settings(b, PAPER_LR.get(man.architecture, 1.0)) if opt == "lbfgs" else None
        t = time.perf_counter()
        (rec,) = recover_batch(obj, Y, restarts=3, budget=b, seeds=[0], batch="restarts", stop=PAPER,
                               optimizer=opt, lbfgs=lb)
        wall = time.perf_counter() - t
        out.append({"model": model, "cut": cut, "optimizer": opt,
                    "budget": "3 restarts x 500 iterations (scipy: 625 evaluations; lbfgs: 25 steps x 20)",
                    "wall_s": wall, "eval_s": rec.eval_seconds,
                    "optimizer_share": 1 - (rec.eval_seconds or 0) / wall,
                    "iterations": [r.iterations for r in rec.restarts], "psnr": psnr(rec.image, face),
                    "provider": obj.provider})
    return out


def throughput(faces: np.ndarray, device: str, n_images: int, max_iter: int) -> list[dict]:
    from gs_onnx.solve.objective import make_objective
    from gs_onnx.solve.restart import Budget, recover_batch

    out = []
    k = min(n_images, len(faces))
    man, op, Y = _problem("dcgan", 0.1628, np.concatenate([faces] * (-(-n_images // len(faces))))[:n_images])
    obj = make_objective(man, 1, op, device=device)
    from gs_onnx.solve.restart import lbfgs_settings
    from gs_onnx.solve.stopping import PAPER

    for opt in _optimizers():
        b = Budget(max_iter=max_iter, max_fun=int(max_iter * 1.25))
        kw = {"stop": PAPER} if opt == "scipy" else {"stop": PAPER, "optimizer": opt, "lbfgs": lbfgs_settings(b, 0.1)}
        t = time.perf_counter()
        recs = recover_batch(obj, Y, restarts=3, budget=b, seeds=list(range(len(Y))), batch="images", **kw)
        wall = time.perf_counter() - t
        ev = sum(r.eval_seconds or 0 for r in recs)
        out.append({"optimizer": opt, "images": len(Y), "restarts": 3, "max_iter": max_iter, "wall_s": wall,
                    "images_per_s": len(Y) / wall, "eval_share": ev / wall, "distinct_faces": k})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--out", default=".devdata")
    pp.add_argument("--reference", action="store_true", help="Also run the parity set on the CPU and write "
                                                              f"{REFERENCE.relative_to(ROOT)}.")
    pr = sub.add_parser("run")
    pr.add_argument("--data", default=".devdata")
    pr.add_argument("--device", default="cuda")
    pr.add_argument("--out", required=True)
    pr.add_argument("--only", default="parity,paper,throughput")
    pr.add_argument("--throughput-images", type=int, default=8)
    pr.add_argument("--throughput-iters", type=int, default=500)
    a = ap.parse_args()
    if a.cmd == "prepare":
        from gs_onnx.io.images import list_images, load_image

        files = list_images(ROOT.parent / "shared" / "data" / "celeba_crops64" / "test")[:PARITY["images"]]
        faces = np.stack([load_image(f, 64) for f in files]).astype(np.float32)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "faces.npy", faces)
        big = list_images(ROOT.parent / "shared" / "data" / "celeba_aligned" / "test")[0]
        np.save(out / "face128.npy", load_image(big, 128).astype(np.float32))
        (out / "faces.json").write_text(json.dumps([f.name for f in files] + [big.name]) + "\n")
        print(f"wrote {out / 'faces.npy'} ({len(faces)} faces)")
        if a.reference:
            res = parity(faces, "cpu")
            res.update({"files": [f.name for f in files], "hardware": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")})
            REFERENCE.write_text(json.dumps(res, indent=1) + "\n")
            print(f"wrote {REFERENCE} (mean PSNR {res['mean_psnr']:.3f} dB, {res['seconds']:.0f} s)")
        return
    faces = np.load(Path(a.data) / "faces.npy", allow_pickle=False)
    face128 = np.load(Path(a.data) / "face128.npy", allow_pickle=False)
    only = a.only.split(",")
    res = {"device": a.device, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "parity" in only:
        print("parity", flush=True)
        r = parity(faces, a.device)
        if REFERENCE.is_file():
            ref = json.loads(REFERENCE.read_text())
            d = np.abs(np.array(r["psnr"]) - np.array(ref["psnr"]))
            r["cpu_reference"] = {"mean_psnr": ref["mean_psnr"], "mean_diff_db": r["mean_psnr"] - ref["mean_psnr"],
                                  "mean_abs_diff_db": float(d.mean()), "max_abs_diff_db": float(d.max())}
        res["parity"] = r
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")  # each section as it ends: a timeout keeps them
        print(json.dumps({k: v for k, v in r.items() if k != "psnr"}), flush=True)
    if "paper" in only:
        res["paper"] = []
        for model, cut, face in (("dcgan", 1, faces[0]), ("began", 2, face128)):
            print(f"paper {model}", flush=True)
            res["paper"] += paper_budget(model, cut, face, a.device)
            Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
            print(json.dumps(res["paper"][-1]), flush=True)
    if "throughput" in only:
        print("throughput", flush=True)
        res["throughput"] = throughput(faces, a.device, a.throughput_images, a.throughput_iters)
        print(json.dumps(res["throughput"]), flush=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
