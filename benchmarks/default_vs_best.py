"""The default method against the best of GS alone, TV and Lasso-DCT, per model, data set and condition (issue 28).

    python benchmarks/default_vs_best.py RESULTS_FOLDER [RESULTS_FOLDER ...] [--markdown]

Reads the results.jsonl of gs-experiment runs (physics and cs presets with --methods gs-tv,tv,lasso-dct, or
gs,tv,lasso-dct where the model's default is gs). The default is what ``gs-recover --method auto`` runs: the
model's recommended method for the operator (gs_onnx.solve.registry.recommended_method). GS alone is the plain gs
row where there is one, else the GS stage of a gs-tv row (``gs_psnr``: the same plan, the same start). Only
images that every method finished are compared. Prints mean PSNR per method, default - best other, the images,
BEGAN's seam statistic against the truth's, and the slowest default run.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from gs_onnx.generator.registry import load
from gs_onnx.solve.registry import recommended_method


def condition(r: dict) -> str:
    if r.get("preset") == "cs":
        return f"CS {r.get('operator')} {r['ratio']:.4f}"
    return r.get("variant") or r.get("operator")


def main():
    folders = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows = []
    for f in folders:
        rows += [json.loads(line) for line in (Path(f) / "results.jsonl").read_text().splitlines() if line.strip()]
    by = defaultdict(dict)  # (model, dataset, condition) -> image -> {method: row}
    for r in rows:
        by[(r["model"], r["dataset"], condition(r))].setdefault(r["image"], {})[r["method"]] = r
    recs = {}
    out = []
    for (model, dataset, cond), images in sorted(by.items()):
        if model not in recs:
            recs[model] = load(model).recommended
        some = next(iter(images.values()))
        kind = next(iter(some.values()))["operator"]
        default = recommended_method(recs[model], kind)
        vals = defaultdict(list)
        seams, truth, secs = [], [], []
        for img, ms in images.items():
            gs = ms["gs"]["psnr"] if "gs" in ms else (ms["gs-tv"].get("gs_psnr") if "gs-tv" in ms else None)
            need = {default, "tv", "lasso-dct"}
            if gs is None or not need <= set(ms):
                continue
            vals["default"].append(ms[default]["psnr"])
            vals["gs"].append(gs)
            vals["tv"].append(ms["tv"]["psnr"])
            vals["lasso-dct"].append(ms["lasso-dct"]["psnr"])
            secs.append(ms[default]["seconds"])
            if ms[default].get("seam") is not None:
                seams.append(ms[default]["seam"])
                truth.append(ms[default]["seam_truth"])
        if not vals:
            continue
        mean = {k: float(np.mean(v)) for k, v in vals.items()}
        others = {k: mean[k] for k in ("gs", "tv", "lasso-dct") if not (k == "gs" and default == "gs")}
        best = max(others, key=others.get)
        res = {"model": model, "dataset": dataset, "condition": cond, "default": default, "images": len(vals["default"]),
               **{f"psnr_{k}": round(v, 2) for k, v in mean.items()}, "best_other": best,
               "margin": round(mean["default"] - others[best], 2), "max_seconds": round(max(secs), 1),
               "seam": round(float(np.mean(seams)), 3) if seams else None,
               "seam_truth": round(float(np.mean(truth)), 3) if truth else None}
        out.append(res)
    if "--markdown" in sys.argv:
        print("| model | data | condition | n | default | GS | TV | Lasso-DCT | default - best other | slowest s | seam (truth) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in out:
            seam = "" if r["seam"] is None else f"{r['seam']:.2f} ({r['seam_truth']:.2f})"
            print(f"| {r['model']} | {r['dataset']} | {r['condition']} | {r['images']} | {r['default']} "
                  f"{r['psnr_default']:.2f} | {r['psnr_gs']:.2f} | {r['psnr_tv']:.2f} | {r['psnr_lasso-dct']:.2f} | "
                  f"{r['margin']:+.2f} ({r['best_other']}) | {r['max_seconds']:.0f} | {seam} |")
    else:
        for r in out:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
