"""The README's picture: the headline command on one face, beside the truth and other methods on the same ``y``.

Measures a face with ``gs-measure`` (the default model, Gaussian, m/n 0.1628, the paper's noise), runs
``gs-recover`` once per method on that one file exactly as a user types it (``--method NAME``; ``nogs`` is
``--method gs --cut 0``; ``default`` is the command with no ``--method``), and writes a labelled strip
(truth | each method, with its PSNR and seconds) and a JSON of the numbers::

    python benchmarks/headline.py -o docs/figures/headline.png
    python benchmarks/headline.py --image ../shared/data/celeba_aligned/test/000123.jpg --methods nogs,gs,pnp,default,tv

Every recovery runs one after another in its own process (nothing else should run: the seconds are reported).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LABELS = {"nogs": "no surgery", "gs": "GS", "default": "default", "tv": "TV", "pnp": "PnP", "pnp-bm3d": "PnP-BM3D",
          "lasso-dct": "Lasso-DCT", "gs-tv": "GS + TV"}


def run(args: list, cwd: Path) -> float:
    t = time.perf_counter()
    p = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{p.stderr}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(ROOT / "gs_onnx" / "samples" / "celeba_aligned_00000.jpg"))
    ap.add_argument("--model", default="began")
    ap.add_argument("--ratio", default="0.1628")
    ap.add_argument("--methods", default="nogs,gs,pnp,default")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "figures" / "headline.png"))
    ap.add_argument("--keep", default=None, help="keep the measurements and every recovery folder here")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each method this many times (the seconds: min, median, max; the image is the same)")
    a = ap.parse_args()

    from gs_onnx.io.images import labelled, load_image, save_png
    from gs_onnx.metrics import psnr
    from gs_onnx.solve import registry

    out = Path(a.output)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(a.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        run([BIN / "gs-measure", a.image, "--model", a.model, "--ratio", a.ratio, "-o", tmp / "meas.npy"], tmp)
        sidecar = json.loads((tmp / "meas.json").read_text())
        truth = load_image(a.image, sidecar["image_shape"][1])
        panels = [(truth, "truth")]
        for name in a.methods.split(","):
            flags = {"nogs": ["--method", "gs", "--cut", "0"], "default": []}.get(name, ["--method", name])
            if name in ("nogs", "default") or "model" in registry.method(name).settings:
                flags = ["--model", a.model, *flags]
            folder = tmp / f"out-{name}"
            times = [run([BIN / "gs-recover", tmp / "meas.npy", *flags, "--reference", a.image, "-o", folder, "-q",
                          "--overwrite"], tmp) for _ in range(max(1, a.repeat))]
            seconds = float(np.median(times))
            rep = json.loads((folder / "report.json").read_text())
            x = np.load(folder / "recovered.npy", allow_pickle=False)[0]
            row = {"method": name, "ran": rep["method"], "psnr": round(psnr(x, truth), 2),
                   "ssim": rep["images"][0]["ssim"], "fit": rep["images"][0].get("fit", {}).get("ratio"),
                   "seconds": round(seconds, 1), "seconds_runs": [round(t, 1) for t in times]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            label = f"default ({rep['method']})" if name == "default" else LABELS.get(name, name)
            panels.append((x, f"{label}: {row['psnr']:.2f} dB"))
    caption = (f"{a.model}, Gaussian m/n {a.ratio} (m = {sidecar['m']}), one CelebA test face, "
               f"the same y for every method")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(labelled(panels, caption, scale=2 if truth.shape[1] <= 128 else 1), out)
    info = {"image": Path(a.image).name, "model": a.model, "ratio": float(a.ratio), "m": sidecar["m"], "rows": rows,
            "host": platform.processor() or platform.machine(), "command": " ".join(sys.argv)}
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
