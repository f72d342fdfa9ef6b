"""Hardening, round three: each class of the third hostile corpus closed as a class, one test per class.

* lost data: ``--overwrite`` replaces only a folder gs-onnx wrote (a model folder, a data folder are never
  replaced), and no output may lie inside (or hold) an input;
* model lookup: a bare name is never a folder in the working directory;
* recovery folders: a file of several images needs ``--index``; ``--strict`` and ``--reference`` apply to folders
  (the rules of docs/recovery-graph.md section 12 have their own kit: tests/test_conformance.py);
* the fit: ``--strict`` fails without a noise to judge against, and where the declared noise explains the
  measurements by itself; measurements that leave half of ||y|| unexplained (another operator's, noise) exit 2
  without it;
* serve-demo: a NUL byte or a FIFO is a 404, a SIGTERM while starting removes its folder;
* gs-experiment data: corrupt, encrypted, oddly compressed or inflating archives, duplicate ids, files that are
  not images: one line each; LAYOUT.json never written through a link; a killed run's staging folder removed;
* concurrent runs: a second gs-measure on the same output is refused while the first runs;
* Ctrl-C: a pool of workers ends at once (the queued tasks dropped, the running ones killed).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gs_onnx import cli
from gs_onnx.generator import registry

from test_cli import IMG_A, TINY, assert_one_line_error, invoke


@pytest.fixture
def meas(tmp_path):
    m = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", m, "-q"])
    assert r.exit_code == 0, r.stderr
    return m


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ lost data

def test_overwrite_never_replaces_a_folder_gs_onnx_did_not_write(tmp_path, meas):
    from gs_onnx.cli.recovery import main as export_recovery

    model = tmp_path / "my-dcgan"
    shutil.copytree(registry.SHIPPED / "dcgan", model)
    data = tmp_path / "photos"
    data.mkdir()
    (data / "holiday.jpg").write_bytes(b"not really a jpeg, but mine")
    for victim, needle in ((model, "is the model folder"), (data, "was not written by gs-onnx")):
        before = _snapshot(victim)
        r = invoke(cli.recover_main, [meas, "--model", "dcgan", "-o", victim, "--overwrite", *TINY])
        assert_one_line_error(r, needle)
        r = invoke(export_recovery, ["--measurements", meas, "--method", "gs", "-o", victim, "--overwrite",
                                     "--max-iter", "3"])
        assert_one_line_error(r, needle)
        assert _snapshot(victim) == before
    # a folder gs-onnx wrote is replaced, whole
    out = tmp_path / "out"
    for _ in range(2):
        r = invoke(cli.recover_main, [meas, "--model", "dcgan", "-o", out, "--overwrite", *TINY, "-q"])
        assert r.exit_code == 0, r.stderr
    assert (out / ".gs-output").is_file() and (out / "report.json").is_file()


def test_no_output_inside_an_input_folder(tmp_path, meas):
    from gs_onnx.cli.recovery import main as export_recovery

    fold = tmp_path / "fold"
    r = invoke(export_recovery, ["--measurements", meas, "--method", "gs", "-o", fold, "--max-iter", "3"])
    assert r.exit_code == 0, r.stderr
    before = _snapshot(fold)
    for target in (fold / "inputs", fold / "new"):
        r = invoke(cli.recover_main, [fold, "-o", target, "--overwrite", "-q"])
        assert_one_line_error(r, "lies inside the input")
    assert _snapshot(fold) == before


# ------------------------------------------------------------------------------------------------ model lookup

def test_a_bare_model_name_never_means_a_folder_in_the_working_directory(tmp_path, meas, monkeypatch):
    """A folder called dcgan in the working directory (a clone's models/, a download) does not shadow the
    installed model, with or without --models-dir; ./dcgan names it."""
    from gs_onnx.generator.registry import resolve

    decoy = tmp_path / "dcgan"
    shutil.copytree(registry.SHIPPED / "dcgan", decoy)
    raw = json.loads((decoy / "manifest.json").read_text())
    raw["name"] = "decoy"
    (decoy / "manifest.json").write_text(json.dumps(raw))
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "own"
    own.mkdir()
    assert resolve("dcgan") == (registry.SHIPPED / "dcgan").absolute()
    assert resolve("dcgan", own) == (registry.SHIPPED / "dcgan").absolute()
    assert resolve("./dcgan").resolve() == decoy.resolve()
    r = invoke(cli.recover_main, [meas, "--model", "dcgan", "-o", tmp_path / "o", *TINY, "-q"])
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "o" / "report.json").read_text())["model"] == "dcgan"
    r = invoke(cli.recover_main, [meas, "--model", "./dcgan", "-o", tmp_path / "o2", *TINY, "-q"])
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "o2" / "report.json").read_text())["model"] == "decoy"
    # the sidecar's model name, likewise
    sc = json.loads(meas.with_suffix(".json").read_text())
    assert sc.get("model") == "dcgan"
    r = invoke(cli.recover_main, [meas, "-o", tmp_path / "o3", *TINY, "-q"])
    assert r.exit_code == 0 and json.loads((tmp_path / "o3" / "report.json").read_text())["model"] == "dcgan"


# ------------------------------------------------------------------------------------------- recovery folders

@pytest.fixture(scope="module")
def two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two")
    m = tmp / "two.npy"
    r = invoke(cli.measure_main, [IMG_A, IMG_A.with_name("celeba64_182639.jpg"), "--model", "dcgan", "--ratio", "0.05",
                                  "-o", m, "-q"])
    assert r.exit_code == 0, r.stderr
    return m


def test_a_file_of_several_images_needs_an_index(tmp_path, two):
    from gs_onnx.cli.recovery import main as export_recovery

    r = invoke(export_recovery, ["--measurements", two, "--method", "gs", "-o", tmp_path / "f", "--max-iter", "3"])
    assert_one_line_error(r, "holds 2 images", "--index")
    assert not (tmp_path / "f").exists()
    r = invoke(export_recovery, ["--measurements", two, "--method", "gs", "--index", "1", "-o", tmp_path / "f",
                                 "--max-iter", "3"])
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "f" / "recovery.json").read_text())["image"] == 1


# ------------------------------------------------------------------------------------------------ serve-demo

@pytest.fixture
def fake_page(tmp_path):
    """A page folder as serve-demo checks it (index.html and onnxruntime-web's file), without npm."""
    from gs_onnx.cli.serve_demo import ORT_FILE

    page = tmp_path / "page"
    (page / ORT_FILE).parent.mkdir(parents=True)
    (page / ORT_FILE).write_text("// stand-in")
    (page / "index.html").write_text("<html></html>")
    return page


def test_serve_demo_answers_nul_bytes_and_fifos_with_404(tmp_path, fake_page):
    import os
    import threading
    import urllib.error
    import urllib.request

    from gs_onnx.cli.serve_demo import make_server

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "recovery.json").write_text("{}")
    os.mkfifo(folder / "pipe.npy")
    server = make_server(folder, fake_page, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path in ("/folder/a%00b.npy", "/%00", "/folder/pipe.npy"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=5)
            assert e.value.code == 404, path
        assert urllib.request.urlopen(base + "/folder/recovery.json", timeout=5).read() == b"{}"
    finally:
        server.shutdown()
        server.server_close()


def test_serve_demo_removes_its_folder_when_terminated_while_starting(tmp_path, fake_page):
    import os
    import signal
    import subprocess
    import sys
    import time

    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    p = subprocess.Popen([sys.executable, "-m", "gs_onnx", "serve-demo", "--port", "0", "--page", str(fake_page)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmpdir.glob("gs-serve-demo-*")):
        time.sleep(0.05)
    assert list(tmpdir.glob("gs-serve-demo-*")), "the default folder was never started"
    p.send_signal(signal.SIGTERM)   # while the default folder is being made
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "Traceback" not in err, err
    assert not list(tmpdir.glob("gs-serve-demo-*"))


# ------------------------------------------------------------------------------------------ gs-experiment data

def _data(args, tmp_path):
    from gs_onnx.cli import experiment

    return invoke(experiment.main, ["data", *args, "--data-root", tmp_path / "root", "--no-progress",
                                    "--train", "1", "--test", "0"])


def _zip(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


ALIGNED = IMG_A.parent / "celeba_aligned_00000.jpg"


def test_data_refuses_broken_archives_in_one_line(tmp_path):
    face = ALIGNED.read_bytes()
    cases = {}
    cases["duplicate"] = (_zip(tmp_path / "dup.zip", [("a/000001.jpg", face), ("b/000001.jpg", face)]), "two files")
    cases["bomb"] = (_zip(tmp_path / "bomb.zip", [("img_align_celeba/000001.jpg", b"\0" * (80 << 20))]), "zip bomb")
    corrupt = bytearray(_zip(tmp_path / "c.zip", [("img_align_celeba/000001.jpg", face * 3)]).read_bytes())
    start = corrupt.index(b"000001.jpg") + len("000001.jpg") + 40
    corrupt[start:start + 200] = bytes(200)   # the deflate stream damaged
    (tmp_path / "corrupt.zip").write_bytes(bytes(corrupt))
    cases["corrupt"] = (tmp_path / "corrupt.zip", "corrupt")
    enc = bytearray(_zip(tmp_path / "e.zip", [("img_align_celeba/000001.jpg", face)]).read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):   # the encryption flag set in both headers
        i = enc.index(sig)
        off = i + (6 if sig == b"PK\x03\x04" else 8)
        enc[off] |= 1
    (tmp_path / "enc.zip").write_bytes(bytes(enc))
    cases["encrypted"] = (tmp_path / "enc.zip", "encrypted")
    odd = bytearray(_zip(tmp_path / "o.zip", [("img_align_celeba/000001.jpg", face)]).read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):   # an unknown compression method (99) in both headers
        i = odd.index(sig)
        off = i + (8 if sig == b"PK\x03\x04" else 10)
        odd[off:off + 2] = (99).to_bytes(2, "little")
    (tmp_path / "odd.zip").write_bytes(bytes(odd))
    cases["compression"] = (tmp_path / "odd.zip", "compression")
    for name, (src, needle) in cases.items():
        r = _data(["--celeba", src], tmp_path)
        assert_one_line_error(r, needle)
        assert not (tmp_path / "root" / "celeba_aligned").exists(), name


def test_data_lays_out_images_only_and_never_writes_through_a_link(tmp_path):
    import os

    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "a.jpg").write_text("a text file named like a photo")
    r = invoke(__import__("gs_onnx.cli.experiment", fromlist=["main"]).main,
               ["data", "--coco", coco, "--coco-images", "1", "--data-root", tmp_path / "root", "--no-progress"])
    assert_one_line_error(r, "not a readable image")
    # a link where LAYOUT.json goes: replaced by the file, the file it pointed to untouched
    root = tmp_path / "root2"
    root.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("mine")
    (root / "LAYOUT.json").symlink_to(outside)
    stale = root / f".gs-staging.{2 ** 22 + 12345}.x"   # a killed run's staging folder (no such process)
    stale.mkdir()
    d = tmp_path / "dl" / "img_align_celeba"
    d.mkdir(parents=True)
    shutil.copy(ALIGNED, d / "000001.jpg")
    r = invoke(__import__("gs_onnx.cli.experiment", fromlist=["main"]).main,
               ["data", "--celeba", tmp_path / "dl", "--train", "1", "--test", "0", "--data-root", root,
                "--no-progress"])
    assert r.exit_code == 0, r.stderr
    assert outside.read_text() == "mine" and not os.path.islink(root / "LAYOUT.json")
    assert json.loads((root / "LAYOUT.json").read_text())["written"]["celeba_aligned/train"] == 1
    assert not stale.exists()


# ------------------------------------------------------------------------------------------ the fit and --strict

@pytest.mark.parametrize("noise,needle", [("none", "no declared noise"), ("5", "explains most of their measurements")])
def test_strict_needs_a_noise_claim_that_can_be_read(tmp_path, noise, needle):
    """No noise declared: nothing to judge against; a declared noise that explains the measurements by itself:
    the fit proves nothing. --strict fails in both, after writing; without it the second is a warning."""
    m = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "--noise", noise, "-o", m, "-q"])
    assert r.exit_code == 0, r.stderr
    r = invoke(cli.recover_main, [m, "--model", "dcgan", "--method", "gs", "-o", tmp_path / "o", *TINY, "--strict"])
    assert_one_line_error(r, "--strict", needle)
    assert (tmp_path / "o" / "report.json").is_file()
    r = invoke(cli.recover_main, [m, "--model", "dcgan", "--method", "gs", "-o", tmp_path / "o2", *TINY])
    assert r.exit_code == 0
    verdict = json.loads((tmp_path / "o2" / "report.json").read_text())["images"][0]["fit"].get("verdict")
    assert verdict == (None if noise == "none" else "uninformative")


def test_measurements_that_are_noise_are_refused_without_strict(tmp_path, meas):
    """y replaced by noise of the same size, its sidecar re-signed (the checksums are public): whatever noise the
    sidecar declares, the recovery leaves most of ||y|| unexplained: exit 2 in one line, the results written."""
    import numpy as np

    from gs_onnx.io.measurement import read_measurements, write_measurements

    y, side = read_measurements(meas)
    fields = {k: v for k, v in side.items() if k not in ("format", "format_version", "shape", "dtype", "sha256",
                                                         "meta_sha256")}
    noise = tmp_path / "noise.npy"
    write_measurements(noise, np.random.default_rng(0).standard_normal(y.shape).astype(np.float32) *
                       float(np.std(y)), fields)
    r = invoke(cli.recover_main, [noise, "--method", "gs", "--restarts", "1", "-o", tmp_path / "o"])
    assert_one_line_error(r, "unexplained", "not made by the operator")
    assert json.loads((tmp_path / "o" / "report.json").read_text())["images"][0]["fit"]["verdict"] == "mismatch"


def test_strict_and_the_reference_apply_to_recovery_folders(tmp_path, meas):
    from gs_onnx.cli.recovery import main as export_recovery

    fold = tmp_path / "fold"
    r = invoke(export_recovery, ["--measurements", meas, "--method", "gs", "-o", fold, "--max-iter", "8"])
    assert r.exit_code == 0, r.stderr
    iface = json.loads((fold / "recovery.json").read_text())
    assert iface["sigma"] > 0 and iface["source"]["sha256"]
    # eight iterations leave a residual far above the noise: --strict says so for a folder too
    r = invoke(cli.recover_main, [fold, "-o", tmp_path / "o", "--strict"])
    assert_one_line_error(r, "--strict", "residual above")
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["images"][0]["fit"]["verdict"] == "does not fit"
    # a reference that is not the measured image is refused, before anything runs
    other = IMG_A.with_name("celeba64_182639.jpg")
    r = invoke(cli.recover_main, [fold, "-o", tmp_path / "o3", "--reference", other])
    assert_one_line_error(r, "is not the image this folder's measurements were made from")
    assert not (tmp_path / "o3").exists()


# ----------------------------------------------------------------------------------- corpus 2: concurrent runs

def test_a_second_gs_measure_on_the_same_output_is_refused_while_the_first_runs(tmp_path):
    from gs_onnx.io.publish import claimed

    out = tmp_path / "m.npy"
    with claimed(out):   # a run in progress
        r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", out, "--overwrite"])
        assert_one_line_error(r, "another run is writing to")
    assert not out.exists() and not list(tmp_path.glob(".gs-claim.*"))
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", out, "-q"])
    assert r.exit_code == 0 and out.exists() and not list(tmp_path.glob(".gs-claim.*"))


def test_ctrl_c_ends_a_pool_of_workers_at_once(tmp_path):
    """Ctrl-C (SIGINT to the foreground process group) while a pool of workers runs long tasks: gs-experiment
    exits 130 within seconds, no worker left behind. It used to wait for every submitted task: the queued ones
    ran in full after the running ones had taken the KeyboardInterrupt."""
    import os
    import signal
    import subprocess
    import sys
    import time

    samples = Path(registry.__file__).resolve().parents[1] / "samples"
    exe = Path(sys.executable).parent / "gs-experiment"
    # SIGINT not ignored in the child (as at a terminal), even where this test runs in a background job
    p = subprocess.Popen([str(exe), "cs", "--models", "dcgan", "--datasets", str(samples), "--images", "4",
                          "--ratios", "0.05", "--methods", "deep-decoder", "--max-iter", "100000", "--workers", "2",
                          "--threads", "1", "--no-progress", "--no-plot", "-o", str(tmp_path / "out")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
    t0 = time.time()
    while len(children.read_text().split()) < 2:  # the two workers (and the spawn helper) are up
        assert p.poll() is None and time.time() - t0 < 120, "the workers did not start"
        time.sleep(0.2)
    workers = [int(c) for c in children.read_text().split()]
    time.sleep(8)                                 # into their tasks
    os.killpg(p.pid, signal.SIGINT)
    t1 = time.time()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and time.time() - t1 < 20, (p.returncode, time.time() - t1, err)
    assert "Traceback" not in err, err
    time.sleep(1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists() and
                "zombie" not in Path(f"/proc/{w}/status").read_text()], "workers left running"
