"""Every method of the paper on the same measurements, plus the torch reference of GS, via the CLIs.

    python benchmarks/baselines.py --model dcgan --images ../shared/data/celeba_crops64/test --n 10 \
        --ratios 0.0488,0.163 --out runs/baselines

Per ratio: ``gs-measure`` once, then ``gs-recover --method ...`` for GS at the recommended cut, no surgery
(``--cut 0``), Lasso-DCT, mGANprior, Deep Decoder and IAGAN (each writes its own report.json), and the torch
reference of GS (``gs_export.reference``) on the same measurements, seeds, budget and restart rule. Finished
runs are kept and skipped when the script is run again. Writes ``summary.json``, a markdown table
(``table.md``) and one PNG grid per ratio (originals, then one column per method) under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def runs(cut: int, restarts: int, dd_steps: int) -> dict[str, list[str]]:
    lb = ["--restarts", str(restarts)]
    return {
        f"GS (c={cut})": ["--method", "gs", "--cut", str(cut), *lb],
        "no GS (c=0)": ["--method", "gs", "--cut", "0", *lb],
        "Lasso-DCT": ["--method", "lasso-dct"],
        f"mGANprior (c={cut})": ["--method", "mganprior", "--cut", str(cut), *lb],
        "Deep Decoder": ["--method", "deep-decoder", "--steps", str(dd_steps)],
        "IAGAN": ["--method", "iagan"],
    }


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-").replace("--", "-")


def torch_gs(meas: Path, model: str, cut: int, restarts: int, seed: int, refs: list[str], out: Path) -> dict:
    """GS recovery in torch (generator read back from the model's ONNX weights) on the same measurements."""
    import torch

    from gs_export.from_onnx import torch_generator
    from gs_export.reference import TorchObjective
    from gs_onnx.generator import registry
    from gs_onnx.io.images import load_image
    from gs_onnx.io.measurement import read_measurements
from gs_onnx.physics import operator_for
    from gs_onnx.metrics import psnr
    from gs_onnx.solve.restart import Budget, run_restarts

    if out.exists():
        return json.loads(out.read_text())
    man = registry.load(model)
    y, sidecar = read_measurements(meas)
    op = operator_for(sidecar)
    opt = man.recommended["optimizer"]
    budget = Budget(max_iter=opt["max_iter"], max_fun=opt["max_fun"], history=opt["history"])
    obj = TorchObjective(torch_generator(man), cut, op, y[0], man.to_unit())
    rows, images = [], []
    for i in range(y.shape[0]):
        t0 = time.perf_counter()
        r = run_restarts(obj.with_measurements(y[i]), restarts=restarts, budget=budget, seed=seed + i)
        images.append(r.image)
        rows.append({"index": i, "psnr": psnr(r.image, load_image(refs[i], man.image_shape[1])),
                     "measurement_error": r.measurement_error, "objective": r.objective,
                     "seconds": time.perf_counter() - t0, "evaluations": r.evaluations})
    np.save(out.with_suffix(".npy"), np.stack(images))
    rep = {"method": "gs (torch reference)", "cut": cut, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "images": rows}
    out.write_text(json.dumps(rep, indent=1) + "\n")
    return rep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dcgan")
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--ratios", default="0.0488,0.163")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--dd-steps", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/baselines")
    ap.add_argument("--only", default=None, help="Comma-separated subset of run names (debugging).")
    a = ap.parse_args()
    from gs_onnx.generator import registry
    from gs_onnx.io.images import grid, list_images, load_image, save_png

    man = registry.load(a.model)
    cut = man.recommended_cut
    imgs = [str(p) for p in list_images(a.images)[: a.n]]
    root = Path(a.out)
    summary = {"model": a.model, "images": a.images, "n": len(imgs), "restarts": a.restarts, "seed": a.seed,
               "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
               "ratios": {}}
    for ratio in [float(r) for r in a.ratios.split(",")]:
        out = root / f"ratio{ratio:g}"
        out.mkdir(parents=True, exist_ok=True)
        meas = out / "meas.npy"
        if not meas.exists():
            subprocess.run([BIN / "gs-measure", *imgs, "--model", a.model, "--ratio", str(ratio),
                            "--seed", str(a.seed), "-o", meas], check=True)
        res = {}
        for name, args in runs(cut, a.restarts, a.dd_steps).items():
            if a.only and name not in a.only.split(","):
                continue
            folder = out / slug(name)
            if not (folder / "report.json").exists():
                print(f"[{time.strftime('%H:%M:%S')}] ratio {ratio}: {name}", flush=True)
                cmd = [BIN / "gs-recover", meas, "--model", a.model, *args, "-o", folder, "--seed", str(a.seed),
                       "--no-progress"]
                if args[1] == "lasso-dct":
                    cmd.remove("--model")
                    cmd.remove(a.model)
                for p in imgs:
                    cmd += ["--reference", p]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            res[name] = json.loads((folder / "report.json").read_text())
        if not a.only or "torch GS" in a.only.split(","):
            print(f"[{time.strftime('%H:%M:%S')}] ratio {ratio}: torch GS", flush=True)
            res[f"torch GS (c={cut})"] = torch_gs(meas, a.model, cut, a.restarts, a.seed, imgs, out / "torch-gs.json")
        rows = {}
        for name, rep in res.items():
            ps = np.array([r["psnr"] for r in rep["images"]])
            secs = np.array([r["seconds"] for r in rep["images"]])
            rows[name] = {"psnr_mean": float(ps.mean()), "psnr_std": float(ps.std()),
                          "seconds_per_image": float(secs.mean()), "psnr": ps.tolist()}
        gs_name, t_name = f"GS (c={cut})", f"torch GS (c={cut})"
        entry = {"m": res[next(iter(res))]["m"], "n": res[next(iter(res))]["n"], "methods": rows}
        if gs_name in rows and t_name in rows:
            d = np.abs(np.array(rows[gs_name]["psnr"]) - np.array(rows[t_name]["psnr"]))
            entry["onnx_vs_torch_psnr_abs_diff"] = {"mean": float(d.mean()), "max": float(d.max())}
        summary["ratios"][f"{ratio:g}"] = entry
        # grid: originals, then each method's recoveries, one column per method
        cols = [[load_image(p, man.image_shape[1]) for p in imgs[:6]]]
        for name in res:
            f = out / slug(name) / "recovered.npy" if not name.startswith("torch") else out / "torch-gs.npy"
            if f.exists():
                cols.append(list(np.load(f, allow_pickle=False)[:6]))
        tiles = [cols[c][r] for r in range(len(cols[0])) for c in range(len(cols))]
        save_png(grid(tiles, ncol=len(cols)), root / f"grid_ratio{ratio:g}.png")
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["| m/n (m) | method | PSNR dB (mean +- std) | s / image |", "|---|---|---|---|"]
    for r, e in summary["ratios"].items():
        for name, row in e["methods"].items():
            lines.append(f"| {r} ({e['m']}) | {name} | {row['psnr_mean']:.2f} +- {row['psnr_std']:.2f} "
                         f"| {row['seconds_per_image']:.1f} |")
    (root / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for r, e in summary["ratios"].items():
        if "onnx_vs_torch_psnr_abs_diff" in e:
            d = e["onnx_vs_torch_psnr_abs_diff"]
            print(f"m/n {r}: |PSNR(ONNX GS) - PSNR(torch GS)| mean {d['mean']:.3f} dB, max {d['max']:.3f} dB")


if __name__ == "__main__":
    main()
