"""The recovery graph against gs-recover with the same plan, on hidden CelebA test faces (issue 25's check).

    python benchmarks/recovery_graph_psnr.py [IMAGES] [MODELS]     (needs $GS_ONNX_DATA or ../shared/data)

Per model (dcgan c=1, Gaussian m/n 0.1628; began c=2, the DCT operator, m/n 0.1628) and face: gs-measure the
face, gs-recover --optimizer lbfgs (the host-driven path: the paper's L-BFGS, the model's stopping plan), then
gs-export recovery and examples/python/run_recovery.py (a client importing only numpy and onnxruntime) on the same
measurements. Prints one row per face and the mean PSNR difference; writes runs/recovery_graph_psnr.json.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETUPS = {"dcgan": ("celeba_crops64/test", "gaussian", 64), "began": ("celeba_aligned/test", "srdct", 128)}


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {p.stderr.strip()[-400:]}")
    return p.stdout


def main():
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    models = sys.argv[2].split(",") if len(sys.argv) > 2 else list(SETUPS)
    data = Path(os.environ.get("GS_ONNX_DATA", ROOT.parent / "shared" / "data"))
    from gs_onnx.io.images import load_image
    from gs_onnx.metrics import psnr

    rows = []
    for model in models:
        folder, operator, size = SETUPS[model]
        faces = sorted((data / folder).glob("*.jpg"))[:images]
        for face in faces:
            with tempfile.TemporaryDirectory() as t:
                t = Path(t)
                run([BIN / "gs-measure", face, "--model", model, "--operator", operator, "--ratio", "0.1628", "-o",
                     t / "meas.npy"])
                run([BIN / "gs-recover", t / "meas.npy", "--method", "gs", "--optimizer", "lbfgs", "-o", t / "host",
                     "--no-progress", "-q"])
                run([BIN / "gs-export", "recovery", "--measurements", t / "meas.npy", "-o", t / "graph"])
                out = run([sys.executable, ROOT / "examples" / "python" / "run_recovery.py", t / "graph", "--out",
                           t / "graph.npy"])
                truth = load_image(face, size)
                host = np.load(t / "host" / "recovered.npy")[0]
                graph = np.load(t / "graph.npy")
                rep = json.loads((t / "host" / "report.json").read_text())
                row = {"model": model, "face": face.name, "host": psnr(host, truth), "graph": psnr(graph, truth),
                       "max_abs": float(np.abs(host - graph).max()), "host_s": rep["images"][0]["seconds"],
                       "graph_s": float(out.split(" s")[0].rsplit(", ", 1)[1])}
                rows.append(row)
                print(f"{model} {face.name}: host {row['host']:.2f} dB, graph {row['graph']:.2f} dB "
                      f"(diff {row['graph'] - row['host']:+.3f}, max |dx| {row['max_abs']:.2g}), "
                      f"{row['host_s']:.1f} s / {row['graph_s']:.1f} s", flush=True)
        d = np.array([r["graph"] - r["host"] for r in rows if r["model"] == model])
        print(f"{model}: {len(d)} faces, graph - host PSNR mean {d.mean():+.3f} dB, max |diff| {np.abs(d).max():.3f} dB")
    out = ROOT / "runs" / "recovery_graph_psnr.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
