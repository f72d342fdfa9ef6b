"""The bad-input corpus: crafted model folders, edited sidecars, odd images, hostile output folders, concurrent
sweeps, and the Python API. Every case ends in exit 2 with exactly one ``error:`` line, no traceback and
nothing written (or, where the input is acceptable, in the right result), never in a silent wrong number."""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gs_onnx import cli
from gs_onnx.errors import GSError

from test_cli import (IMG_A, IMG_B, MODEL, SHIPPED_MODEL, TINY, assert_one_line_error, copy_pair, invoke,
                      measure_pair, no_temp_dirs, snapshot, write_sidecar)

N = 3 * 64 * 64


# ----------------------------------------------------------------------------------------------- helpers

def model_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "models" / MODEL
    shutil.copytree(SHIPPED_MODEL, dst)
    return dst


def resum(model: Path) -> None:
    """Recompute every checksum the manifest lists (an attacker who controls the folder would)."""
    mf = model / "manifest.json"
    raw = json.loads(mf.read_text())
    for rel in list(raw["files"]):
        p = model / rel
        if p.exists():
            raw["files"][rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    mf.write_text(json.dumps(raw, indent=1))


def edit_manifest(model: Path, fn, text: str | None = None) -> None:
    mf = model / "manifest.json"
    if text is not None:
        mf.write_text(text)
        return
    raw = json.loads(mf.read_text())
    fn(raw)
    mf.write_text(json.dumps(raw, indent=1))


def set_location(model: Path, graph: str, location: str) -> None:
    """Point every external-data tensor of ``graph`` to ``location``."""
    import onnx

    m = onnx.load(str(model / graph), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    (model / graph).write_bytes(m.SerializeToString())


@pytest.fixture(scope="module")
def meas(tmp_path_factory) -> Path:
    return measure_pair(tmp_path_factory.mktemp("bad_meas"))


@pytest.fixture
def work(tmp_path, meas):
    return tmp_path, copy_pair(meas, tmp_path)


def refused(tmp: Path, cmd, args, *needles, env=None) -> str:
    before = snapshot(tmp)
    r = invoke(cmd, [str(a) for a in args], env=env)
    line = assert_one_line_error(r, *needles)
    assert snapshot(tmp) == before, "something was written although the command failed"
    return line


def recover_with_model(tmp: Path, m: Path, model: Path, *needles) -> str:
    return refused(tmp, cli.recover_main, [m, "--model", model, "-o", tmp / "out", *TINY], *needles)


# ---------------------------------------------------------------------------------- crafted model folders

def test_external_data_not_listed_is_refused(work):
    tmp, m = work
    model = model_copy(tmp)
    shutil.copy(model / "block1.weights.bin", model / "extra.bin")
    set_location(model, "block1.fwd.onnx", "extra.bin")
    resum(model)  # the graph's new checksum is listed; extra.bin is not
    recover_with_model(tmp, m, model, "extra.bin", "not listed")


@pytest.mark.parametrize("location, needle", [("/etc/hostname", "relative"), ("../outside.bin", "relative")])
def test_external_data_outside_the_folder_is_refused(work, location, needle):
    tmp, m = work
    model = model_copy(tmp)
    (tmp / "models" / "outside.bin").write_bytes((model / "block1.weights.bin").read_bytes())
    set_location(model, "block1.fwd.onnx", location)
    resum(model)
    recover_with_model(tmp, m, model, needle)


def test_external_data_symlinked_outside_is_refused(work):
    tmp, m = work
    model = model_copy(tmp)
    outside = tmp / "secret.bin"
    outside.write_bytes((model / "block1.weights.bin").read_bytes())
    (model / "link.bin").symlink_to(outside)
    set_location(model, "block1.fwd.onnx", "link.bin")
    edit_manifest(model, lambda raw: raw["files"].update({"link.bin": hashlib.sha256(outside.read_bytes()).hexdigest()}))
    resum(model)
    recover_with_model(tmp, m, model, "escapes the model folder")


def test_graphs_swapped_between_blocks_are_refused(work):
    tmp, m = work
    model = model_copy(tmp)
    a, b = model / "block2.fwd.onnx", model / "block3.fwd.onnx"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    resum(model)
    recover_with_model(tmp, m, model, "does not compute what the manifest says")


@pytest.mark.parametrize("edit, needle", [
    (lambda raw: raw["tensors"].__setitem__("h2", [256, 8, 9]), "shape"),
    (lambda raw: raw["tensors"].__setitem__("h2", [256, -8, 8]), "dimension"),
    (lambda raw: raw["cuts"][2].__setitem__("inputs", ["nowhere"]), "unknown tensor"),
    (lambda raw: raw.__setitem__("output_range", [1.0, 1.0]), "output_range"),
    (lambda raw: raw.__setitem__("output_range", [-1.0, float("inf")]), "output_range"),
    (lambda raw: raw["recommended"].__setitem__("cut", "1"), "recommended.cut"),
    (lambda raw: raw["recommended"].__setitem__("cut", True), "recommended.cut"),
    (lambda raw: raw["recommended"]["optimizer"].__setitem__("max_iter", "500"), "max_iter"),
    (lambda raw: raw.__setitem__("blocks", []), "no blocks"),
])
def test_inconsistent_manifests_are_refused(work, edit, needle):
    tmp, m = work
    model = model_copy(tmp)
    edit_manifest(model, edit)
    recover_with_model(tmp, m, model, needle)


def test_nan_output_range_is_refused(work):
    tmp, m = work
    model = model_copy(tmp)
    text = (model / "manifest.json").read_text().replace('"output_range": [\n  -1.0,', '"output_range": [\n  NaN,')
    assert "NaN" in text
    edit_manifest(model, None, text)
    recover_with_model(tmp, m, model, "output_range")


def test_absurdly_nested_manifest_is_refused(work):
    tmp, m = work
    model = model_copy(tmp)
    edit_manifest(model, None, '{"format": "gs-onnx-manifest", "x": ' + "[" * 100000 + "]" * 100000 + "}")
    recover_with_model(tmp, m, model, "manifest")


def test_gs_models_lists_the_good_and_names_the_bad(tmp_path):
    good = model_copy(tmp_path)
    bad = tmp_path / "models" / "broken"
    shutil.copytree(good, bad)
    edit_manifest(bad, None, "[" * 50000)
    r = invoke(cli.models_main, ["--models-dir", tmp_path / "models"])
    assert r.exit_code == 0, r.stderr
    assert "broken:" in r.stdout and "nested too deeply" in r.stdout and f"{MODEL}: dcgan" in r.stdout


def test_missing_models_dir_is_refused(work):
    tmp, m = work
    refused(tmp, cli.recover_main, [m, "--models-dir", tmp / "nope", "-o", tmp / "o", *TINY], "--models-dir")


# --------------------------------------------------------------------------------------------- sidecars

def edited(m: Path, fn, resum_side: bool = True) -> None:
    side = json.loads(m.with_suffix(".json").read_text())
    fn(side)
    write_sidecar(m.with_suffix(".json"), side, resum_side)


@pytest.mark.parametrize("fn, needle", [
    (lambda s: s.__setitem__("seed", 7), "seed"),
    (lambda s: s["operator"].__setitem__("seed", 7), "seed"),
    (lambda s: s.update(seed=7, operator={**s["operator"], "seed": 7}), "operator_fingerprint"),
    (lambda s: s["operator"].update(type="srdct"), "operator_fingerprint"),
    (lambda s: s.__setitem__("image_shape", "3x64x64"), "image_shape"),
    (lambda s: s.__setitem__("preprocessing", "lanczos"), "preprocessing"),
    (lambda s: s.__setitem__("model", 5), "model"),
    (lambda s: s.__setitem__("ratio", 0.5), "ratio"),
    (lambda s: s.__setitem__("sigma", -1.0), "sigma"),
])
def test_edited_sidecars_are_refused(work, fn, needle):
    tmp, m = work
    edited(m, fn)
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], needle)


def test_a_careless_edit_is_named(work):
    tmp, m = work
    edited(m, lambda s: s.__setitem__("noise", "none"), resum_side=False)
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "edited")


def test_cutting_the_measurements_with_m_is_refused(work):
    """Columns of y cut together with m, everywhere m appears (sha256 and meta checksum recomputed)."""
    from test_cli import rewrite_pair

    tmp, m = work
    y = np.load(m)[:, :1500]
    side = json.loads(m.with_suffix(".json").read_text())
    op = {**side["operator"], "m": 1500}
    rewrite_pair(m, y, m=1500, ratio=1500 / N, operator=op)
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "operator_fingerprint")


def test_empty_measurement_batch_is_refused(work):
    from test_cli import rewrite_pair

    tmp, m = work
    rewrite_pair(m, np.zeros((0, 2000), np.float32))
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "no measurements")


def test_npy_header_claiming_a_huge_shape_is_named(work):
    tmp, m = work
    data = m.read_bytes()
    head = data[:128].replace(b"(2, 2000)", b"(2000000, 2000000)".ljust(len(b"(2, 2000)")))
    # rewrite the header properly: numpy pads the header to 64 bytes
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (200000, 200000)})
    m.write_bytes(buf.getvalue() + data[128:])
    edited(m, lambda s: s.__setitem__("sha256", hashlib.sha256(m.read_bytes()).hexdigest()))
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "header claims shape")
    assert head


def test_text_in_a_npy_is_named(work):
    tmp, m = work
    m.write_text("this is not an array\n")
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "not a .npy file")


def test_huge_structured_operator_is_refused_before_allocating(work):
    tmp, m = work
    edited(m, lambda s: s.update(image_shape=[3, 10000, 10000], n=3 * 10 ** 8,
                                 operator={"type": "srdct", "m": 2000, "n": 3 * 10 ** 8, "seed": 0}))
    refused(tmp, cli.recover_main, [m, "--method", "lasso-dct", "-o", tmp / "o"], "impossibly large")


def test_swapped_references_are_refused(work):
    tmp, m = work
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY, "--reference", IMG_B, "--reference", IMG_A],
            "reference 1", "sha256")


# -------------------------------------------------------------------------------------------------- images

def test_16_bit_grayscale_png_keeps_its_range(tmp_path):
    from gs_onnx.io.images import load_image

    a = np.full((64, 64), int(0.431 * 65535), np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png", 64)
    assert x.shape == (3, 64, 64) and abs(float(x.mean()) - 0.431) < 1e-4


def test_float_tiff_in_range_is_exact_and_out_of_range_refused(tmp_path):
    from gs_onnx.io.images import load_image

    f = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_allclose(load_image(tmp_path / "f.tif", 64)[1], f, atol=1e-7)
    Image.fromarray(f * 4, mode="F").save(tmp_path / "f4.tif")
    refused(tmp_path, cli.measure_main, [tmp_path / "f4.tif", "--ratio", "0.1", "-o", tmp_path / "m.npy"],
            "outside [0, 1]")


def _png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (1-bit gray), with a tiny valid IDAT of one row."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused(tmp_path):
    _png_header(tmp_path / "bomb.png", 30000, 30000)
    refused(tmp_path, cli.measure_main, [tmp_path / "bomb.png", "--ratio", "0.1", "-o", tmp_path / "m.npy"],
            "too large")


def test_tiny_image_is_upscaled_with_a_warning(tmp_path):
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tiny.png")
    r = invoke(cli.measure_main, [tmp_path / "tiny.png", "--ratio", "0.1", "-o", tmp_path / "m.npy"])
    assert r.exit_code == 0 and "2x2" in r.stderr and "upscaled" in r.stderr


def test_unknown_image_mode_is_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 100000, np.int32), mode="I").save(tmp_path / "i32.tif")  # beyond 16 bits
    refused(tmp_path, cli.measure_main, [tmp_path / "i32.tif", "--ratio", "0.1", "-o", tmp_path / "m.npy"], "mode")


# ----------------------------------------------------------------------------------------- output folders

def test_output_folder_on_another_filesystem_is_published_by_copy(work, monkeypatch):
    import gs_onnx.io.publish as pub

    tmp, m = work
    out = tmp / "mnt"
    out.mkdir()
    (out / "old.txt").write_text("from an earlier run")
    (out / pub.MARK).write_text("an earlier gs-onnx results folder\n")  # --overwrite replaces only those
    real = os.path.ismount
    monkeypatch.setattr(pub.os.path, "ismount", lambda p: Path(p) == out or real(p))
    r = invoke(cli.recover_main, [m, "-o", out, *TINY, "--overwrite"])
    assert r.exit_code == 0, r.stderr
    assert (out / "report.json").is_file() and (out / "recovered_002.png").is_file()
    assert not (out / "old.txt").exists()
    no_temp_dirs(tmp)


def test_unwritable_output_is_one_line(work, monkeypatch):
    import gs_onnx.io.publish as pub

    tmp, m = work

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(pub.tempfile, "mkdtemp", denied)
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "permission denied")


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(work, monkeypatch):
    import gs_onnx.cli.recover as rec

    tmp, m = work

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rec, "save_png", full)
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY], "no space left")


def test_staging_of_a_killed_run_is_cleaned(work):
    tmp, m = work
    stale = tmp / ".gs-staging.999999.abc"
    stale.mkdir()
    (stale / "recovered_001.png").write_bytes(b"half")
    r = invoke(cli.recover_main, [m, "-o", tmp / "o", *TINY])
    assert r.exit_code == 0 and not stale.exists()


def test_ctrl_c_keeps_the_finished_images(work, monkeypatch):
    import gs_onnx.cli.recover as rec

    tmp, m = work
    from gs_onnx.solve import registry

    real = registry.solve_many

    def interrupt_second(solver, first, Y, progress):
        if first >= 1:
            raise KeyboardInterrupt
        return real(solver, first, Y, progress)

    monkeypatch.setattr(registry, "solve_many", interrupt_second)
    r = invoke(cli.recover_main, [m, "-o", tmp / "o", *TINY, "--batch", "none"])
    assert r.exit_code == 130 and "interrupted" in r.stderr
    rep = json.loads((tmp / "o" / "report.json").read_text())
    assert [row["image"] for row in rep["images"]] == [1] and "1 of 2" in rep["interrupted"]
    assert (tmp / "o" / "recovered_001.png").is_file() and not (tmp / "o" / "recovered_002.png").exists()
    no_temp_dirs(tmp)
    assert rec.publish  # the one publishing helper wrote the partial result


def test_report_json_is_strict_json(work):
    from gs_onnx.cli.recover import json_safe

    tmp, m = work
    assert json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("nan")}) == \
        {"a": None, "b": [1.0, None], "c": None}
    r = invoke(cli.recover_main, [m, "-o", tmp / "o", *TINY])
    assert r.exit_code == 0
    json.loads((tmp / "o" / "report.json").read_text(),
               parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))


@pytest.mark.parametrize("args, needle", [
    (["--threads", "40"], "--threads"),
    (["--threads", "-1"], "--threads"),
])
def test_threads_are_bounded(work, args, needle):
    tmp, m = work
    refused(tmp, cli.recover_main, [m, "-o", tmp / "o", *TINY, *args], needle)


def test_absurd_noise_is_refused(tmp_path):
    refused(tmp_path, cli.measure_main, [IMG_A, "--ratio", "0.1", "--noise", "1e300", "-o", tmp_path / "m.npy"],
            "absurdly large")


# ----------------------------------------------------------------------------------------- experiments

def _exp(args):
    from gs_onnx.cli import experiment as ecli

    return CliRunner().invoke(ecli.main, [str(a) for a in args])


def test_two_drivers_on_one_folder(tmp_path):
    from gs_onnx.experiment.results import ResultsFile

    held = ResultsFile(tmp_path / "exp").lock()
    try:
        r = _exp(["samples", "--models", "dcgan", "--count", "2", "--cuts", "1", "-o", tmp_path / "exp", "--no-plot"])
        assert r.exit_code == 2 and "another gs-experiment" in r.stderr
        assert not (tmp_path / "exp" / "results.jsonl").exists()
    finally:
        held.unlock()


def test_corrupt_middle_line_is_found_before_any_work(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "results.jsonl").write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    before = (out / "results.jsonl").read_bytes()
    r = _exp(["samples", "--models", "dcgan", "--count", "2", "--cuts", "1", "-o", out, "--no-plot"])
    assert r.exit_code == 2 and "line 2" in r.stderr
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize("make", ["folder", "binary"])
def test_results_file_that_is_not_a_text_file(tmp_path, make):
    out = tmp_path / "exp"
    out.mkdir()
    if make == "folder":
        (out / "results.jsonl").mkdir()
    else:
        (out / "results.jsonl").write_bytes(bytes(range(256)) * 4)
    r = _exp(["samples", "--models", "dcgan", "--count", "2", "--cuts", "1", "-o", out, "--no-plot"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "results.jsonl" in r.stderr


def test_pool_workers_die_with_a_killed_driver(tmp_path):
    code = textwrap.dedent('''
        import os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context
        from gs_onnx.experiment.pool import _die_with_parent
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_die_with_parent) as ex:
            print(ex.submit(os.getpid).result(), flush=True)
            ex.submit(time.sleep, 60)
            time.sleep(60)
    ''')
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    worker = int(p.stdout.readline())
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    for _ in range(50):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {worker} outlived its killed driver")


# ------------------------------------------------------------------------------------------- export side

@pytest.mark.parametrize("args, needle", [
    (["checkpoint", "--arch", "dcgan", "--checkpoint", "README.md", "--name", "x", "-o", "OUT"], "error"),
    (["checkpoint", "--arch", "dcgan", "--checkpoint", "README.md", "--name", "x", "-o", "OUT", "--config", "{bad"],
     "not valid JSON"),
    (["untrained", "--arch", "began", "--config", '{"bogus": 1}', "-o", "OUT"], "bogus"),
])
def test_export_input_errors_are_one_line(tmp_path, args, needle):
    pytest.importorskip("torch")
    root = Path(__file__).resolve().parent.parent
    args = [a.replace("OUT", str(tmp_path / "out")).replace("README.md", str(root / "README.md")) for a in args]
    p = subprocess.run([str(Path(sys.executable).parent / "gs-export"), *args], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), p.stderr
    assert not (tmp_path / "out").exists()


def test_train_input_errors_are_one_line(tmp_path):
    pytest.importorskip("torch")
    shutil.copy(IMG_A, tmp_path / "a.jpg")
    p = subprocess.run([str(Path(sys.executable).parent / "gs-train"), "dcgan", "--data", str(tmp_path), "-o",
                        str(tmp_path / "run"), "--config", '{"bogus": 1}'], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "bogus" in p.stderr, p.stderr[-2000:]


# -------------------------------------------------------------------------------------------- Python API

def test_python_api_refuses_bad_arguments_before_work():
    from gs_onnx import Budget, CutGenerator, GaussianOperator, Objective, load_model, recover

    man = load_model("dcgan")
    gen = CutGenerator(man, 1, "cpu")
    op = GaussianOperator(10, man.n, 0)
    cases = [
        (lambda: recover(gen, op, np.zeros(11, np.float32)), "11 measurements"),
        (lambda: recover(gen, op, np.zeros((2, 10), np.float32)), "1-D"),
        (lambda: recover(gen, op, np.full(10, np.nan, np.float32)), "NaN"),
        (lambda: recover(gen, op, np.zeros(10, np.float32), restarts=0), "restarts"),
        (lambda: Budget(0, 0), "max_iter"),
        (lambda: Objective(gen, op, np.zeros(12, np.float32)), "12 values"),
        (lambda: load_model(None), "model"),
    ]
    for fn, needle in cases:
        with pytest.raises(GSError, match=needle):
            fn()
    assert man.cut(np.int64(1)).cut == 1  # a numpy integer is a cut like any other
