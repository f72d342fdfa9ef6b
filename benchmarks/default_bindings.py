"""Every binding gives the default image: ``gs-recover meas.npy`` (the default method, as typed) against
``gs-export recovery`` (auto: the same default method, whole in one ONNX graph) run by ``gs-recover FOLDER``, on
hidden CelebA test faces, for each operator beyond compressed sensing (issue 38's check).

    python benchmarks/default_bindings.py [--faces N] [--models dcgan,began] [--conds mask,sr4,...] [--photos]

Needs $GS_ONNX_DATA or ../shared/data. One row per model, condition and face (PSNR of each, the difference, the
method the default chose); appends to runs/default_bindings.jsonl and prints the mean |difference| per model.
The Node example and the page run the same folder's graph (tests/test_node.py, tests/test_web.py).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FOLDERS = {64: "celeba_crops64/test", 128: "celeba_aligned/test"}
#: condition -> gs-measure options (the physics preset's conditions; blur, box and denoising: gs-tv's)
CONDS = {"mask": ["--operator", "mask", "--keep", "0.3"], "sr4": ["--operator", "downsample", "--factor", "4"],
         "blur2": ["--operator", "blur", "--sigma", "2"], "box": ["--operator", "box"],
         "fourier25": ["--operator", "fourier", "--keep", "0.25"], "dct": ["--operator", "srdct", "--ratio", "0.1628"],
         "denoise": ["--operator", "identity", "--noise", "0.1"], "cs163": ["--ratio", "0.1628"]}
SIZE = {"dcgan": 64, "began": 128}


def run(cmd):
    t = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode not in (0, 2):   # 2: a fit verdict, the image is written
        raise SystemExit(f"{Path(str(cmd[0])).name} failed: {p.stderr.strip()[-400:]}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=2)
    ap.add_argument("--models", default="dcgan,began")
    ap.add_argument("--conds", default="mask,sr4,blur2,box,fourier25")
    ap.add_argument("--photos", action="store_true", help="the first COCO test photos instead of CelebA test faces")
    a = ap.parse_args()
    data = Path(os.environ.get("GS_ONNX_DATA", ROOT.parent / "shared" / "data"))
    from gs_onnx.io.images import load_image
    from gs_onnx.metrics import psnr

    out = ROOT.parent / "runs" / "default_bindings.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    diffs: dict[str, list[float]] = {}
    for model in a.models.split(","):
        from gs_onnx.io.images import list_images

        faces = list_images(data / ("coco/test" if a.photos else FOLDERS[SIZE[model]]))[:a.faces]
        for cond in a.conds.split(","):
            for face in faces:
                with tempfile.TemporaryDirectory() as t:
                    t = Path(t)
                    run([BIN / "gs-measure", face, "--model", model, *CONDS[cond], "-o", t / "meas.npy", "-q"])
                    host_s = run([BIN / "gs-recover", t / "meas.npy", "-o", t / "host", "--no-progress", "-q"])
                    run([BIN / "gs-export", "recovery", "--measurements", t / "meas.npy", "-o", t / "fold"])
                    graph_s = run([BIN / "gs-recover", t / "fold", "-o", t / "graph", "--no-progress", "-q"])
                    truth = load_image(face, SIZE[model])
                    host = np.load(t / "host" / "recovered.npy")[0]
                    graph = np.load(t / "graph" / "recovered.npy")[0]
                    method = json.loads((t / "fold" / "recovery.json").read_text())["method"]
                    chosen = [json.loads((t / d / "report.json").read_text())["images"][0].get("pnp", {}).get("chosen")
                              for d in ("host", "graph")]
                    row = {"model": model, "cond": cond, "face": face.name, "method": method, "chosen": chosen,
                           "host": round(float(psnr(host, truth)), 3), "graph": round(float(psnr(graph, truth)), 3),
                           "max_abs": round(float(np.abs(host - graph).max()), 4),
                           "host_s": round(host_s, 1), "graph_s": round(graph_s, 1)}
                    row["diff"] = round(row["graph"] - row["host"], 3)
                    diffs.setdefault(model, []).append(abs(row["diff"]))
                    with open(out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    for model, d in diffs.items():
        print(f"{model}: mean |graph - host| {np.mean(d):.3f} dB, max {np.max(d):.3f} over {len(d)} recoveries")


if __name__ == "__main__":
    sys.exit(main())
