"""The browser page (examples/web) in a real browser: headless Chromium (Debian's) driven by puppeteer-core loads
a dcgan recovery folder made from a bundled face through ``python -m gs_onnx serve-demo``'s server, runs it with
onnxruntime-web (WASM) in chunks of 5 iterations, and is checked against Python's onnxruntime running the same
graph: every traced chunk replayed from the page's own state gives the page's state and image (<= 1e-3), the
whole recovery gives Python's image up to the float32 drift any two runtimes show (see docs/recovery-graph.md),
the PSNR the page shows is the PSNR of the image it returns. Bad folders (altered file, too large, a measurement
sidecar, files made for another graph) are refused in the page with a message and nothing run; the page's reader
reads every folder of the conformance kit (docs/recovery-graph.md, section 13) as kit.json says.

Skipped, with the reason, where Chromium, node or npm is missing (.ci/run installs Chromium with apt-get) or where
npm cannot install the page's two packages."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "examples" / "web"
SAMPLE = ROOT / "gs_onnx" / "samples" / "celeba64_182638.jpg"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHUNK = 5
TRACE = (0, 9, 19)   # the first chunk (the iterations most sensitive to rounding), a middle one, the last


@pytest.fixture(scope="module")
def web():
    """examples/web with onnxruntime-web and puppeteer-core installed from its lock file (every browser test
    takes it: they skip here, with the reason, where the browser or node cannot run)."""
    if not CHROMIUM:
        pytest.skip("no Chromium here (apt-get install chromium; .ci/run installs it)")
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("needs node and npm")
    if not ((WEB / "node_modules" / "onnxruntime-web").is_dir() and (WEB / "node_modules" / "puppeteer-core").is_dir()):
        p = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=WEB, capture_output=True,
                           text=True, timeout=600)
        if p.returncode != 0:
            pytest.skip(f"npm ci failed in examples/web (no registry?): {p.stderr[-300:]}")
    return WEB


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """What ``serve-demo`` serves without a folder: a dcgan recovery folder of a bundled face (Gaussian m/n 0.163,
    the model's plan: 1 x 100), with its reference.npy."""
    from gs_onnx.cli.serve_demo import default_folder

    return default_folder(tmp_path_factory.mktemp("web"))


def _serve(folder: Path):
    from gs_onnx.cli.serve_demo import make_server, page_dir

    server = make_server(folder, page_dir(None), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _drive(web: Path, folder: Path, query: str, out: Path, *extra) -> dict:
    server, url = _serve(folder)
    try:
        p = subprocess.run(["node", "drive.mjs", url + query, str(out), "--chromium", CHROMIUM, *map(str, extra)],
                           cwd=web, capture_output=True, text=True, timeout=900)
    finally:
        server.shutdown()
        server.server_close()
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(out.read_text())


def _array(t: dict) -> np.ndarray:
    dtype = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}[t["dtype"]]
    return np.frombuffer(base64.b64decode(t["b64"]), dtype).reshape(t["dims"])


@pytest.fixture(scope="module")
def page_run(web, folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    report = _drive(web, folder, f"?chunk={CHUNK}&trace={','.join(map(str, TRACE))}", tmp / "out.json",
                    "--screenshot", tmp / "page.png")
    assert report["state"] == "done", report["message"] + "\n" + "\n".join(report["console"])
    return report, tmp / "page.png"


def _psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_the_page_runs_every_chunk_as_python_does(page_run, folder):
    """Each traced chunk, replayed by Python's onnxruntime from the state the page fed into it, ends where the
    page's ended: the loop state (latents) and the image within 1e-3, the same iteration counts."""
    from gs_onnx.io.recovery_folder import read_folder
    from gs_onnx.solve.recovery_graph import GraphRecovery

    report, _ = page_run
    graph, inputs, iface = read_folder(folder)
    runner = GraphRecovery(graph)
    assert sorted(map(int, report["trace"])) == list(TRACE)
    for j, t in report["trace"].items():
        assert t["start"] == int(j) * CHUNK and t["chunk"] == CHUNK
        feed = {**inputs, **{k: _array(v) for k, v in t["state"].items()},
                "start": np.int64(t["start"]), "chunk": np.int64(t["chunk"])}
        out = runner.run(feed)
        for k in ("next_IT", "next_STEPS", "next_ACT"):
            assert np.array_equal(out[k], _array(t["next"][k])), (j, k)
        assert np.abs(out["next_X"] - _array(t["next"]["next_X"])).max() <= 1e-3, j
        assert np.abs(out["image"] - _array(t["image"])).max() <= 1e-3, j


def test_the_page_recovers_the_face_python_recovers(page_run, folder):
    """The whole recovery: 100 iterations, the same winner; the image is Python's up to the drift of two float32
    runtimes over 100 fixed-step L-BFGS iterations (rounding grows about 100x an iteration in the first few:
    docs/recovery-graph.md): within 35 dB of each other and 0.25 dB of the same PSNR against the truth."""
    from gs_onnx.io.recovery_folder import read_folder, read_reference
    from gs_onnx.solve.recovery_graph import GraphRecovery

    report, _ = page_run
    graph, inputs, iface = read_folder(folder)
    truth = read_reference(folder, iface)
    py = GraphRecovery(graph).run(inputs)
    res = report["result"]
    image = _array(res["image"])
    assert image.shape == truth.shape and res["iterations"] == [int(v) for v in py["iterations"]] == [100]
    assert res["winner"] == int(py["winner"]) and res["runs"] == 100 // CHUNK
    assert _psnr(image, py["image"]) >= 35.0
    assert abs(_psnr(image, truth) - _psnr(py["image"], truth)) <= 0.25
    assert _psnr(image, truth) > 25.0


def test_the_page_runs_the_recovery_on_webgpu(web, tmp_path, monkeypatch):
    """?ep=webgpu on Chromium's WebGPU (here SwiftShader, a software adapter that runs the same WebGPU code path as a
    GPU): the session is created on the WebGPU backend, the generator's convolutions run as WebGPU kernels (counted by
    onnxruntime-web's WebGPU profiling, not a fall-back whole to WASM), and the image is Python's. The folder is
    dcgan's default for the Gaussian, gs-pnp (GS, then the PnP stage: the network denoiser and its mirror image, the
    DCT denoiser's threshold and Wiener stage, the held-out choice), cut short so that SwiftShader runs it in about
    two minutes: GS 2 iterations (about 20 s each there, docs/benchmarks.md), every PnP candidate 1 iteration. The
    full stage's kernels are these; two of them failed on WebGPU before (a Slice with step -1, a Conv without its
    attributes) and nothing but running them here showed it."""
    from gs_onnx.cli.demo import default_image
    from gs_onnx.cli.measure import measure_main
    from gs_onnx.cli.recovery import main as recovery_main
    from gs_onnx.io.recovery_folder import read_folder, read_reference
    from gs_onnx.solve import pnp, pnp_graph
    from gs_onnx.solve.recovery_graph import GraphRecovery

    for plans in (pnp.PLANS["onnx"], pnp.PLANS["dct"], pnp.ANCHORED):
        for plan in plans.values():
            monkeypatch.setitem(plan, "iterations", 1)
    monkeypatch.setattr(pnp_graph, "PATIENCE", 1)
    face = default_image(64)
    measure_main.main([str(face), "--model", "dcgan", "--ratio", "0.1628", "-o", str(tmp_path / "face.npy"), "-q"],
                      standalone_mode=False)
    folder = tmp_path / "two"
    recovery_main.main(["--measurements", str(tmp_path / "face.npy"), "--method", "gs-pnp", "--max-iter", "2",
                        "--reference", str(face), "-o", str(folder)], standalone_mode=False)
    plan = read_folder(folder)[2]["plan"]["pnp"]
    assert plan["candidates"][-1] == "pnp-dct" and plan["flip"] and plan["plain"]["iterations"] == 1, plan
    report = _drive(web, folder, "?ep=webgpu&proof=1&chunk=1", tmp_path / "out.json", "--timeout", "600")
    assert report["state"] == "done", report["message"] + "\n" + "\n".join(report["console"][-20:])
    res = report["result"]
    assert report["ep"] == res["ep"] == "webgpu" and report["device"] is True, report["webgpu"]
    kernels = res["kernels"]
    assert kernels.get("Conv", 0) > 0 and kernels.get("ConvTranspose", 0) > 0, kernels
    assert kernels.get("Reciprocal", 0) > 0, kernels   # only the DCT denoiser has one (its patch weights): on WebGPU
    graph, inputs, iface = read_folder(folder)
    py = GraphRecovery(graph).run(inputs)
    image = _array(res["image"])
    assert res["iterations"] == [int(v) for v in py["iterations"]] == [2]
    assert np.abs(image - py["image"]).max() <= 1e-4
    truth = read_reference(folder, iface)
    assert abs(_psnr(image, truth) - _psnr(py["image"], truth)) <= 0.01


def test_the_psnr_shown_is_the_psnr_of_the_image_returned(page_run, folder):
    from gs_onnx.io.recovery_folder import read_folder, read_reference
    from gs_onnx.metrics import psnr

    report, shot = page_run
    _, _, iface = read_folder(folder)
    image = _array(report["result"]["image"])
    ours = psnr(image, read_reference(folder, iface))
    assert abs(report["result"]["psnr"] - ours) < 1e-4
    assert report["psnrShown"] == f"{ours:.2f} dB"
    assert f"PSNR {ours:.2f} dB" in report["message"] and report["isolated"] is True
    # the recovery runs in a worker: the page's own 50 ms timer never waited long while it ran
    assert report["longestPauseMs"] < 250, report["longestPauseMs"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _copy(folder: Path, dst: Path) -> Path:
    shutil.copytree(folder, dst)
    return dst


def _rewrite(folder: Path, iface: dict) -> None:
    (folder / "recovery.json").write_text(json.dumps(iface, indent=1))


def _another_m(folder: Path, tmp: Path) -> Path:
    """The folder with y, w and A of another measurement (m = 1000), recovery.json edited to agree with them
    (m, the operator, shapes, sha256): only the graph, made for m = 2000, can tell."""
    import hashlib

    from gs_onnx.cli import measure_main
    from gs_onnx.cli.recovery import main as recovery_main

    r = CliRunner().invoke(measure_main, [str(SAMPLE), "--model", "dcgan", "--m", "1000", "-o", str(tmp / "m1000.npy")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(recovery_main, ["--measurements", str(tmp / "m1000.npy"), "-o", str(tmp / "rec1000"), "--no-check"])
    assert r.exit_code == 0, r.output
    bad = _copy(folder, tmp / "other")
    iface = json.loads((bad / "recovery.json").read_text())
    for name in ("y", "w", "A"):
        data = (tmp / "rec1000" / "inputs" / f"{name}.npy").read_bytes()
        (bad / "inputs" / f"{name}.npy").write_bytes(data)
        iface["files"][f"inputs/{name}.npy"] = hashlib.sha256(data).hexdigest()
        iface["inputs"][name]["shape"] = list(np.load(tmp / "rec1000" / "inputs" / f"{name}.npy").shape)
    iface["m"] = 1000
    iface["operator"] = json.loads((tmp / "rec1000" / "recovery.json").read_text())["operator"]
    _rewrite(bad, iface)
    return bad


@pytest.mark.parametrize("case", ["altered", "too-large", "sidecar", "other-graph", "picked-altered"])
def test_bad_folders_are_refused_in_the_page(web, folder, tmp_path, case):
    """A clear message in the page, state 'refused', no session run (no result)."""
    extra, query = [], ""
    if case == "altered":
        bad = _copy(folder, tmp_path / "bad")
        y = bad / "inputs" / "y.npy"
        data = bytearray(y.read_bytes())
        data[-1] ^= 1
        y.write_bytes(bytes(data))
        want = "inputs/y.npy does not match its sha256 in recovery.json"
    elif case == "too-large":
        bad, query = folder, "?max_mb=50"
        want = "inputs/A.npy is 98.3 MB, larger than this page accepts (50.0 MB)"
    elif case == "sidecar":
        bad = _copy(folder, tmp_path / "bad")
        from gs_onnx.cli import measure_main

        r = CliRunner().invoke(measure_main, [str(SAMPLE), "--model", "dcgan", "--m", "100", "-o", str(tmp_path / "s.npy")])
        assert r.exit_code == 0, r.output
        shutil.copy(tmp_path / "s.json", bad / "recovery.json")
        want = "this is a measurement file's sidecar (gs-measure), not a recovery folder"
    elif case == "other-graph":
        bad = _another_m(folder, tmp_path)
        want = "inputs/y.npy is [1,1000], the graph takes [1,2000]: these files were not made for this graph"
    else:   # the visitor picks the files of an altered folder
        bad = _copy(folder, tmp_path / "bad")
        (bad / "inputs" / "z0.npy").write_bytes((bad / "inputs" / "z0.npy").read_bytes()[:-4] + b"\0\0\0\0")
        query = "?folder="
        extra = ["--pick", *sorted(str(p) for p in bad.rglob("*") if p.is_file())]
        want = "inputs/z0.npy does not match its sha256 in recovery.json"
    report = _drive(web, bad, query, tmp_path / "out.json", *extra)
    assert report["state"] == "refused", report["message"]
    assert report["message"].startswith("Refused, nothing was run: ") and want in report["message"], report["message"]
    assert report["result"] is None


def _links_out(folder: Path) -> bool:
    """Whether a file of ``folder`` is a link that leaves it."""
    return any(p.is_symlink() and folder.resolve() not in Path(os.path.realpath(p)).parents
               for p in folder.rglob("*"))


def test_the_page_reads_the_conformance_kit_as_the_rules_say(web, tmp_path):
    """The page's own reader (folder.mjs on rules.mjs, in Chromium, the kit served as serve-demo serves a folder)
    accepts every valid folder of the conformance kit and refuses every invalid one by the rule kit.json names
    (section 12's rules, the ones the Node example and gs-recover FOLDER follow)."""
    import sys

    kit = tmp_path / "kit"
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "conformance" / "make_kit.py"), str(kit)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    spec = {e["folder"]: e for e in json.loads((kit / "kit.json").read_text())["folders"]}
    report = _drive(web, kit, "?folder=", tmp_path / "out.json", "--kit")
    got = {r["folder"]: r for r in report["kit"] if not _links_out(kit / r["folder"])}
    # a link is invisible over HTTP: the server judges it (serve-demo answers 404 for a link out of the folder it
    # serves); the kit's links leave their own folder but not the kit, so those folders are served from a root of
    # their own (copies that keep the links), which the links leave
    linked = sorted(set(spec) - set(got))
    root = tmp_path / "links"
    for f in linked:
        shutil.copytree(kit / f, root / f, symlinks=True)
    (root / "kit.json").write_text(json.dumps({"folders": [{"folder": f} for f in linked]}))
    got.update({r["folder"]: r for r in _drive(web, root, "?folder=", tmp_path / "links.json", "--kit")["kit"]})
    assert set(got) == set(spec) and linked
    wrong = [(f, spec[f]["expect"], spec[f].get("rule"), r) for f, r in got.items()
             if not ((spec[f]["expect"] == "run" and r["outcome"] == "read")
                     or (spec[f]["expect"] == "refuse" and r["outcome"] == "refuse" and r["rule"] == spec[f]["rule"]
                         and r["error"] == "GSError"))]
    assert not wrong, wrong
    assert sum(r["outcome"] == "refuse" for r in got.values()) >= 30


def test_picked_files_are_recovered(web, folder, tmp_path):
    """The files of a folder picked in <input type=file> (as a visitor does, no server folder): recovered."""
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    report = _drive(web, tmp_path, "?folder=&chunk=25", tmp_path / "out.json", "--pick", *files)
    assert report["state"] == "done", report["message"]
    assert report["result"]["iterations"] == [100] and report["result"]["runs"] == 4
    # runs of 25 iterations take about 0.75 s each here; the page's timer never waited a third of that
    assert report["longestPauseMs"] < 250, report["longestPauseMs"]


def test_stop_ends_the_recovery_between_runs(web, folder, tmp_path):
    """Stop, clicked once the page shows iteration 10 (runs of 5): the worker ends after the run under way; the
    page says so and keeps the image reached, which Python's replay of the same iterations confirms."""
    from gs_onnx.io.recovery_folder import read_folder
    from gs_onnx.solve.recovery_graph import GraphRecovery

    report = _drive(web, folder, "?chunk=5", tmp_path / "out.json", "--stop-at", "10")
    res = report["result"]
    assert report["state"] == "done" and res["stopped"] is True and report["message"].startswith("Stopped"), report
    reached = res["iterations"][0]
    assert 10 <= reached < 100 and reached % 5 == 0
    graph, inputs, _ = read_folder(folder)
    py = GraphRecovery(graph).run({**inputs, "chunk": np.int64(reached)})
    assert int(py["iterations"][0]) == reached and bool(py["running"]) is True
    assert np.abs(_array(res["image"]) - py["image"]).max() <= 0.05   # the drift of section 10, over few iterations


def test_stop_ends_a_run_that_never_returns(web, folder, tmp_path):
    """A folder whose graph loops for ever inside one run (its Loop's trip count 10^15, its condition always true,
    the checksums recomputed: rule 9's case a reader cannot bound): the worker never hears Stop between runs, so the
    page ends the worker a grace period after Stop and says so, instead of spinning for good."""
    from test_hardening3b import endless

    fold = endless(folder, tmp_path / "fold")
    report = _drive(web, fold, "", tmp_path / "out.json", "--stop-after", "3", "--timeout", "120")
    assert report["state"] == "error" and "did not return" in report["message"], report["message"]


def test_serve_demo_refuses_what_it_cannot_serve(tmp_path):
    from gs_onnx.cli.serve_demo import main

    r = CliRunner().invoke(main, [str(tmp_path)])
    assert r.exit_code == 2 and "is not a recovery folder" in r.output and "Traceback" not in r.output
    (tmp_path / "recovery.json").write_text("{}")
    r = CliRunner().invoke(main, [str(tmp_path), "--page", str(tmp_path)])
    assert r.exit_code == 2 and "has no index.html" in r.output


def test_the_server_serves_two_folders_and_nothing_else(folder, tmp_path):
    """Files of the page and of the folder, with the isolation headers; no listings, nothing outside either root
    (.., a symbolic link out), plain 404s."""
    import urllib.error
    import urllib.request

    from gs_onnx.cli.serve_demo import make_server

    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html").write_text("<p>page</p>")
    (tmp_path / "secret.txt").write_text("secret")
    (page / "link.txt").symlink_to(tmp_path / "secret.txt")
    server = make_server(folder, page, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/") as r:
            assert r.read() == b"<p>page</p>" and r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        with urllib.request.urlopen(base + "/folder/recovery.json") as r:
            assert json.loads(r.read())["format"] == "gs-onnx-recovery"
        for path in ("/folder/", "/folder/inputs/", "/../secret.txt", "/folder/../../secret.txt", "/link.txt",
                     "/%2e%2e/secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path)
            assert e.value.code == 404, path
    finally:
        server.shutdown()
        server.server_close()
