"""The recovery graph in the browser against onnxruntime-node and Python's onnxruntime, side by side.

    python benchmarks/web_speed.py [--rounds 3] [--out FILE.json] [--screenshot docs/figures/web_demo.png]

For a dcgan recovery folder (c=1, Gaussian m/n 0.163, the model's plan: 1 x 100 L-BFGS iterations) and a began
one (c=2, the DCT operator m/n 0.163, its plan capped at 20 iterations so that a browser round stays short), the
same folder runs, interleaved, ``--rounds`` times in: headless Chromium (examples/web through serve-demo and
examples/web/drive.mjs; onnxruntime-web's WASM backend with 1 and 2 threads, the whole budget in one run of the
graph, and in the page's default chunks of about two seconds), onnxruntime-node (examples/node/recover.js)
and Python's onnxruntime (GraphRecovery, 1 and 2 threads). Milliseconds per iteration are the session runs only
(not reading and checking the files, not creating the session), divided by GS's iterations (a gs-pnp folder's
PnP stage included: read the seconds per recovery and the ratios); the table gives the median and the range over
the rounds. Needs Chromium, node and the npm packages of examples/web and examples/node. Prints a markdown table.
"""
import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf import hardware  # noqa: E402

from gs_onnx.cli import measure_main  # noqa: E402
from gs_onnx.cli.recovery import main as recovery_main  # noqa: E402
from gs_onnx.cli.serve_demo import default_folder, make_server, page_dir  # noqa: E402
from gs_onnx.io.recovery_folder import read_folder  # noqa: E402
from gs_onnx.solve.recovery_graph import GraphRecovery  # noqa: E402

FACES = {"began": ROOT / "gs_onnx" / "samples" / "celeba_aligned_00000.jpg"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_folder(tmp: Path, model: str) -> Path:
    """dcgan: what serve-demo serves by default (gs); dcgan-pnp: the same face's default folder (gs-pnp, the Gaussian's
    default); began: the DCT operator, its plan capped at 20 iterations (the default method, gs-pnp); began-gs: the
    same with --method gs; dcgan-3: dcgan's gs folder cut to 3 iterations (for --webgpu)."""
    if model == "dcgan":
        (tmp / "dcgan").mkdir()
        return default_folder(tmp / "dcgan")
    from gs_onnx.cli.demo import default_image

    began = ["--model", "began", "--operator", "srdct"]
    face, measure, export = {   # the face, gs-measure's options (and --ratio 0.1628), gs-export recovery's
        "dcgan-3": (default_image(64), ["--model", "dcgan"], ["--method", "gs", "--max-iter", "3"]),  # WebGPU: short
        "dcgan-pnp": (default_image(64), ["--model", "dcgan"], []),
        "began": (FACES["began"], began, ["--max-iter", "20"]),
        "began-gs": (FACES["began"], began, ["--max-iter", "20", "--method", "gs"]),
    }[model]
    r = CliRunner().invoke(measure_main, [str(face), *measure, "--ratio", "0.1628", "-o", str(tmp / f"{model}.npy")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(recovery_main, ["--measurements", str(tmp / f"{model}.npy"), "--reference", str(face),
                                           *export, "-o", str(tmp / f"rec-{model}")])
    assert r.exit_code == 0, r.output
    return tmp / f"rec-{model}"


def browser(folder: Path, threads: int, chunk: int | None, out: Path, screenshot: Path | None = None,
            ep: str = "wasm") -> dict:
    server = make_server(folder, page_dir(None), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    q = f"?threads={threads}&ep={ep}" + (f"&chunk={chunk}" if chunk else "")
    cmd = ["node", "drive.mjs", f"http://127.0.0.1:{server.server_address[1]}/{q}", str(out), "--chromium", CHROMIUM]
    if screenshot:
        cmd += ["--screenshot", str(screenshot)]
    try:
        p = subprocess.run(cmd, cwd=ROOT / "examples" / "web", capture_output=True, text=True, timeout=1800)
    finally:
        server.shutdown()
        server.server_close()
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    assert rep["state"] == "done", rep["message"]
    r = rep["result"]
    return {"ms": r["msPerIteration"], "iterations": r["iterations"][r["winner"]], "psnr": r["psnr"], "runs": r["runs"],
            "webgpu": rep["webgpu"], "isolated": rep["isolated"], "agent": rep["userAgent"]}


def node(folder: Path, out: Path) -> dict:
    p = subprocess.run(["node", "recover.js", str(folder), str(folder / "reference.npy"), str(out)], cwd=ROOT / "examples" / "node",
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr
    m = re.search(r"won after (\d+) iterations, ([\d.]+) s", p.stdout)
    return {"ms": 1000 * float(m.group(2)) / int(m.group(1)), "iterations": int(m.group(1))}


def python(folder: Path, threads: int) -> dict:
    graph, inputs, _ = read_folder(folder)
    runner = GraphRecovery(graph, "cpu", threads)
    t0 = time.perf_counter()
    out = runner.run(inputs)
    s = time.perf_counter() - t0
    it = int(out["iterations"][int(out["winner"])])
    return {"ms": 1000 * s / it, "iterations": it}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="dcgan,began")
    ap.add_argument("--out", default=None)
    ap.add_argument("--screenshot", default=None, help="PNG of the page after the dcgan recovery (2 threads, chunks)")
    ap.add_argument("--webgpu", action="store_true", help="also the page on WebGPU, one run (Chromium's adapter: "
                    "SwiftShader, a software one, where no GPU is present; for short folders such as dcgan-3)")
    a = ap.parse_args()
    if not CHROMIUM:
        sys.exit("no Chromium: apt-get install chromium")
    runs = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for model in a.models.split(","):
            folder = make_folder(tmp, model)
            cases = {"browser WASM, 1 thread, one run": lambda: browser(folder, 1, 10**6, tmp / "o.json"),
                     "browser WASM, 2 threads, one run": lambda: browser(folder, 2, 10**6, tmp / "o.json"),
                     "browser WASM, 2 threads, page's chunks": lambda: browser(folder, 2, None, tmp / "o.json"),
                     "onnxruntime-node (CPU EP, default threads)": lambda: node(folder, tmp / "n.npy"),
                     "Python onnxruntime, 1 thread": lambda: python(folder, 1),
                     "Python onnxruntime, 2 threads": lambda: python(folder, 2)}
            if a.webgpu:
                cases["browser WebGPU, one run"] = lambda: browser(folder, 2, 10**6, tmp / "o.json", ep="webgpu")
            for r in range(a.rounds):
                for name, fn in cases.items():
                    res = fn()
                    runs.setdefault(model, {}).setdefault(name, []).append(res)
                    print(f"{model} round {r + 1} {name}: {res['ms']:.1f} ms/iteration", file=sys.stderr)
            if a.screenshot and model == "dcgan":
                browser(folder, 2, None, tmp / "o.json", Path(a.screenshot).resolve())
    print(f"\n{hardware('cpu')}, {a.rounds} rounds, interleaved\n")
    print("| model | runtime | ms / GS iteration, median (range) | seconds per recovery, median | vs Python 2 threads, "
          "median of the rounds' ratios (range) |")
    print("|---|---|---|---|---|")
    for model, cases in runs.items():
        refs = [r["ms"] for r in cases["Python onnxruntime, 2 threads"]]
        for name, rs in cases.items():
            ms = [r["ms"] for r in rs]
            med = statistics.median(ms)
            secs = statistics.median(r["ms"] * r["iterations"] / 1000 for r in rs)
            ratios = [a / b for a, b in zip(ms, refs)]   # side by side: the same round's Python run
            print(f"| {model} | {name} | {med:.1f} ({min(ms):.1f}-{max(ms):.1f}) | {secs:.1f} | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
    first = next(iter(runs.values()))["browser WASM, 2 threads, one run"][0]
    print(f"\nbrowser: {first['agent']}; cross-origin isolated: {first['isolated']}; WebGPU: {first['webgpu']}")
    if a.out:
        Path(a.out).write_text(json.dumps({"hardware": hardware("cpu"), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
