"""Command-line tools: gs-measure, gs-recover and gs-models.

Happy paths (files, shapes, report fields) and the contract for bad input: exit status 2, exactly one
stderr line starting with ``error:``, no traceback, and nothing written (no output files, no half-made
output folder, no ``.gs-recover.*`` temp folder left behind).

Recoveries are tiny (``--restarts 1 --max-iter 5``) so the file runs in seconds on two CPU cores.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gs_onnx import cli
from gs_onnx.physics import cs as opmod
from gs_onnx.generator import registry

SAMPLES = Path(cli.__file__).resolve().parent.parent / "samples"
IMG_A = SAMPLES / "celeba64_182638.jpg"
IMG_B = SAMPLES / "celeba64_182639.jpg"
ALIGNED = SAMPLES / "celeba_aligned_00000.jpg"
MODEL = "dcgan-digiface"
SHIPPED_MODEL = registry.SHIPPED / MODEL
N = 3 * 64 * 64
M = round(0.1628 * N)  # 2000
TINY = ["--restarts", "1", "--max-iter", "5"]
BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(autouse=True)
def _no_env_models(monkeypatch):
    """Model search must not depend on the caller's $GS_ONNX_MODELS."""
    monkeypatch.delenv("GS_ONNX_MODELS", raising=False)


def invoke(cmd, args, **kw):
    return CliRunner().invoke(cmd, [str(a) for a in args], **kw)


def assert_one_line_error(result, *needles: str) -> str:
    """Exit 2, stderr exactly one ``error:`` line, no traceback; returns the line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    # a GSError ends in sys.exit(2); anything else escaping would be a crash, not a clean refusal
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    low = lines[0].lower()
    for n in needles:
        assert n.lower() in low, (n, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    """Every entry under ``folder`` (recursively), with size and mtime, to prove nothing changed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def no_temp_dirs(parent: Path) -> None:
    stray = [p.name for p in parent.iterdir() if p.name.startswith(".gs-recover.")]
    assert not stray, stray


def measure_pair(folder: Path, name: str = "meas", images=(IMG_A, IMG_B), extra=()) -> Path:
    out = folder / f"{name}.npy"
    r = invoke(cli.measure_main, [*images, "--ratio", "0.1628", "-o", out, *extra])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return out


def copy_pair(src: Path, folder: Path, name: str = "meas") -> Path:
    dst = folder / f"{name}.npy"
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def write_sidecar(path: Path, meta: dict, resum: bool = True) -> None:
    """Write an edited sidecar; ``resum`` recomputes its meta_sha256 as a careful forger would, so that the
    deeper consistency checks are what refuses it."""
    from gs_onnx.io.measurement import meta_checksum

    if resum:
        meta["meta_sha256"] = meta_checksum(meta)
    path.write_text(json.dumps(meta, indent=2))


def rewrite_pair(npy: Path, y: np.ndarray, *, sha=True, shape=True, **sidecar_updates) -> None:
    """Replace the array in ``npy``; optionally keep the sidecar consistent (sha256, shape) and patch fields."""
    buf = io.BytesIO()
    np.save(buf, y, allow_pickle=False)
    data = buf.getvalue()
    npy.write_bytes(data)
    side = npy.with_suffix(".json")
    meta = json.loads(side.read_text())
    if sha:
        meta["sha256"] = hashlib.sha256(data).hexdigest()
    if shape:
        meta["shape"] = list(y.shape)
    for k, v in sidecar_updates.items():
        meta[k] = v
    write_sidecar(side, meta)


def copy_model(root: Path) -> Path:
    """A private copy of the shipped model, as ``root/models/dcgan-digiface``."""
    dst = root / "models" / MODEL
    shutil.copytree(SHIPPED_MODEL, dst)
    return dst


def edit_manifest(model_dir: Path, fn) -> None:
    mf = model_dir / "manifest.json"
    raw = json.loads(mf.read_text())
    fn(raw)
    mf.write_text(json.dumps(raw, indent=1))


@pytest.fixture(scope="module")
def meas(tmp_path_factory) -> Path:
    """A valid measurement pair of IMG_A and IMG_B at m/n = 0.1628 (read-only: copy before editing)."""
    return measure_pair(tmp_path_factory.mktemp("meas"))


@pytest.fixture
def work(tmp_path, meas):
    """A fresh folder holding a private copy of the valid pair (free to corrupt)."""
    m = copy_pair(meas, tmp_path)
    return tmp_path, m


def recover_refused(tmp_path: Path, args, *needles, outdir: Path | None = None, **kw) -> str:
    """Run gs-recover expecting a one-line refusal; check that nothing was written anywhere in tmp_path."""
    outdir = outdir or tmp_path / "out"
    before = snapshot(tmp_path)
    r = invoke(cli.recover_main, [*TINY, *args, "-o", outdir], **kw)  # args last: they override TINY
    line = assert_one_line_error(r, *needles)
    assert snapshot(tmp_path) == before
    assert not outdir.exists()
    no_temp_dirs(outdir.parent)
    return line


# ------------------------------------------------------------------------------------------ happy paths


def test_measure_writes_float32_pair(meas):
    y = np.load(meas, allow_pickle=False)
    assert y.dtype == np.float32 and y.shape == (2, M)
    assert np.isfinite(y).all()
    side = json.loads(meas.with_suffix(".json").read_text())
    assert side["m"] == M and side["n"] == N and side["image_shape"] == [3, 64, 64]
    assert side["model"] == MODEL and side["shape"] == [2, M] and side["dtype"] == "float32"
    assert side["operator"]["type"] == "gaussian" and side["operator"]["m"] == M
    assert side["sha256"] == hashlib.sha256(meas.read_bytes()).hexdigest()
    assert [Path(s["path"]).name for s in side["sources"]] == [IMG_A.name, IMG_B.name]
    # only the pair, no temp files next to it
    assert sorted(p.name for p in meas.parent.iterdir()) == ["meas.json", "meas.npy"]


def test_recover_with_reference(tmp_path, meas):
    out = tmp_path / "out"
    r = invoke(cli.recover_main, [meas, "--cut", "1", "-o", out, *TINY, "--reference", IMG_A, "--reference", IMG_B])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert sorted(p.name for p in out.iterdir()) == [
        ".gs-output", "compare_001.png", "compare_002.png", "contact_sheet.png", "recovered.npy", "recovered_001.png",
        "recovered_002.png", "report.json"]
    no_temp_dirs(tmp_path)
    for name in ("recovered_001.png", "recovered_002.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size == (64, 64) and im.mode == "RGB"
    x = np.load(out / "recovered.npy", allow_pickle=False)
    assert x.dtype == np.float32 and x.shape == (2, 3, 64, 64)
    assert np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0
    rep = json.loads((out / "report.json").read_text())
    assert rep["model"] == MODEL and rep["cut"] == 1 and rep["device"] == "auto"
    assert isinstance(rep["provider"], str) and rep["provider"].endswith("ExecutionProvider")
    assert rep["m"] == M and rep["n"] == N
    assert [row["index"] for row in rep["images"]] == [0, 1] and [row["image"] for row in rep["images"]] == [1, 2]
    for row in rep["images"]:
        assert isinstance(row["psnr"], float) and 0 < row["psnr"] < 100
        assert isinstance(row["ssim"], float) and -1 <= row["ssim"] <= 1
        assert isinstance(row["measurement_error"], float) and row["measurement_error"] >= 0
        assert isinstance(row["seconds"], (int, float)) and row["seconds"] >= 0
        assert isinstance(row["evaluations"], int) and 1 <= row["evaluations"] <= 7  # max_fun = 1.25 * 5
    assert isinstance(rep["psnr_mean"], float)
    assert "PSNR" in r.stdout


def test_recover_without_reference_psnr_is_null(tmp_path, meas):
    out = tmp_path / "nested" / "out"  # parents are created
    r = invoke(cli.recover_main, [meas, "--cut", "1", "-o", out, *TINY, "--device", "cpu"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((out / "report.json").read_text())
    assert [row["psnr"] for row in rep["images"]] == [None, None]
    assert rep["psnr_mean"] is None and rep["device"] == "cpu" and rep["provider"] == "CPUExecutionProvider"
    no_temp_dirs(out.parent)


def test_recover_default_cut_is_recommended(tmp_path, meas):
    out = tmp_path / "out"
    r = invoke(cli.recover_main, [meas, "-o", out, "--restarts", "1", "--max-iter", "2"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((out / "report.json").read_text())
    assert rep["cut"] == registry.load(MODEL).recommended_cut == 1
    assert rep["cut_inputs"] == ["h1"] and rep["free_values"] == 512 * 4 * 4


def test_measure_m_500_and_recover(tmp_path):
    out = tmp_path / "m500.npy"
    r = invoke(cli.measure_main, [IMG_A, "--m", "500", "-o", out])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    y = np.load(out)
    assert y.shape == (1, 500) and y.dtype == np.float32
    assert json.loads(out.with_suffix(".json").read_text())["m"] == 500
    r = invoke(cli.recover_main, [out, "--cut", "1", "-o", tmp_path / "rec", *TINY, "--reference", IMG_A])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rep = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert rep["m"] == 500 and isinstance(rep["images"][0]["psnr"], float)


def test_measure_aligned_celeba_is_cropped_to_model_size(tmp_path):
    out = tmp_path / "a.npy"
    r = invoke(cli.measure_main, [ALIGNED, "--m", "100", "--noise", "none", "-o", out])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["preprocessing"]["size"] == 64 and side["sigma"] == 0.0


def test_recover_refuses_a_non_empty_folder_and_replaces_it_whole_with_overwrite(tmp_path, meas):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    r = invoke(cli.recover_main, [meas, "--cut", "1", "-o", out, "--restarts", "1", "--max-iter", "2"])
    assert_one_line_error(r, "not empty", "--overwrite")
    assert snapshot(tmp_path) == before
    # --overwrite replaces only a folder gs-onnx wrote (it carries the mark): this one is taken for an earlier run's
    from gs_onnx.io.publish import MARK

    (out / MARK).write_text("an earlier results folder\n")
    r = invoke(cli.recover_main, [meas, "--cut", "1", "-o", out, "--restarts", "1", "--max-iter", "2", "--overwrite"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert not (out / "keep.txt").exists() and (out / "report.json").is_file()  # replaced whole: no stale files
    no_temp_dirs(tmp_path)
    # an empty folder is simply used
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke(cli.recover_main, [meas, "--cut", "1", "-o", empty, "--restarts", "1", "--max-iter", "2"])
    assert r.exit_code == 0 and (empty / "report.json").is_file()


def test_models_lists_shipped_model_with_cuts():
    r = invoke(cli.models_main, [])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert MODEL in r.stdout and "recommended cut 1" in r.stdout
    for c in range(5):
        assert f"cut {c}:" in r.stdout
    r = invoke(cli.models_main, ["--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    row = rows[MODEL]
    assert row["image"] == [3, 64, 64] and row["recommended_cut"] == 1 and row["architecture"] == "dcgan"
    assert [c["cut"] for c in row["cuts"]] == [0, 1, 2, 3, 4]
    assert row["cuts"][0]["inputs"] == {"z": [100, 1, 1]} and row["cuts"][0]["size"] == 100
    assert row["cuts"][1]["inputs"] == {"h1": [512, 4, 4]} and row["cuts"][1]["size"] == 8192


def test_models_dir_and_env_are_searched_first(tmp_path, monkeypatch):
    own = copy_model(tmp_path)
    edit_manifest(own, lambda raw: raw.__setitem__("untrained", True))
    r = invoke(cli.models_main, ["--json", "--models-dir", own.parent])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert Path(rows[MODEL]["path"]) == own and rows[MODEL]["untrained"] is True
    monkeypatch.setenv("GS_ONNX_MODELS", str(own.parent))
    r = invoke(cli.models_main, ["--json"])
    assert Path({row["name"]: row for row in json.loads(r.stdout)}[MODEL]["path"]) == own


def test_models_reports_broken_model_without_failing(tmp_path):
    bad = tmp_path / "models" / "broken"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{not json")
    r = invoke(cli.models_main, ["--models-dir", tmp_path / "models", "--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert "error" in rows["broken"] and MODEL in rows and "error" not in rows[MODEL]


# ------------------------------------------------------------------------------------------ console scripts


def _run(script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GS_ONNX_MODELS"}
    return subprocess.run([str(BIN / script), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_console_scripts_end_to_end(tmp_path):
    for s in ("gs-measure", "gs-recover", "gs-models"):
        assert (BIN / s).is_file(), f"console script {s} not installed next to {sys.executable}"
    p = _run("gs-measure", IMG_A, IMG_B, "--ratio", "0.1628", "-o", "meas.npy", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "meas.npy" in p.stdout
    p = _run("gs-recover", "meas.npy", "--cut", "1", "-o", "out", *TINY, "--reference", IMG_A,
             "--reference", IMG_B, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "PSNR" in p.stdout
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(isinstance(row["psnr"], float) for row in rep["images"])
    p = _run("gs-models", "--json", cwd=tmp_path)
    assert p.returncode == 0 and MODEL in {row["name"] for row in json.loads(p.stdout)}


def test_console_scripts_bad_input_one_line(tmp_path, meas):
    m = copy_pair(meas, tmp_path)
    m.with_suffix(".json").unlink()
    before = snapshot(tmp_path)
    p = _run("gs-recover", m.name, "-o", "out", *TINY, cwd=tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "sidecar" in lines[0], p.stderr
    assert snapshot(tmp_path) == before
    p = _run("gs-measure", tmp_path / "nope.jpg", "--ratio", "0.1", "-o", "x.npy", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ gs-measure refusals


def measure_refused(tmp_path: Path, args, *needles, **kw) -> str:
    before = snapshot(tmp_path)
    out = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [*args, "-o", out], **kw)
    line = assert_one_line_error(r, *needles)
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert snapshot(tmp_path) == before, "gs-measure wrote something although it failed"
    return line


@pytest.mark.parametrize("args,needles", [
    (["--ratio", "0"], ["ratio"]),
    (["--ratio", "1.5"], ["ratio"]),
    (["--ratio", "-0.2"], ["ratio"]),
    (["--m", "0"], ["m = 0"]),
    (["--m", "-3"], ["m = -3"]),
    (["--m", str(N + 1)], [f"n = {N}"]),
    (["--ratio", "0.1", "--m", "100"], ["--ratio", "--m"]),
    ([], ["--ratio", "--m"]),
    (["--m", "100", "--seed", "-1"], ["seed"]),
    (["--m", "100", "--noise", "loud"], ["noise"]),
    (["--m", "100", "--noise", "-0.5"], ["noise"]),
    (["--m", "100", "--noise", "nan"], ["noise"]),
    (["--m", "100", "--crop", "aligned"], ["aligned"]),  # 64x64 image is no CelebA aligned image
    (["--m", "100", "--model", "no-such-model"], ["unknown model", "no-such-model"]),
])
def test_measure_bad_options(tmp_path, args, needles):
    measure_refused(tmp_path, [IMG_A, *args], *needles)


def test_measure_unreadable_image(tmp_path):
    fake = tmp_path / "x.jpg"
    fake.write_text("this is not a JPEG\nsecond line\n")
    measure_refused(tmp_path, [IMG_A, fake, "--ratio", "0.1628"], "x.jpg")


def test_measure_missing_image(tmp_path):
    measure_refused(tmp_path, [IMG_A, tmp_path / "missing.jpg", "--ratio", "0.1628"], "missing.jpg", "not found")


def test_measure_bad_output_path(tmp_path):
    r = invoke(cli.measure_main, [IMG_A, "--m", "10", "-o", tmp_path / "m.txt"])
    assert_one_line_error(r, ".npy")
    r = invoke(cli.measure_main, [IMG_A, "--m", "10", "-o", tmp_path / "nodir" / "m.npy"])
    assert_one_line_error(r, "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_measure_streams_a_matrix_too_big_for_memory(tmp_path, monkeypatch, meas):
    """gs-measure applies A chunk by chunk, so a matrix that does not fit still measures, and gives the
    measurements of the dense matrix; gs-recover, which needs A hundreds of times, refuses it (below)."""
    monkeypatch.setattr(opmod, "available_memory_bytes", lambda: 1_000_000)
    out = tmp_path / "big.npy"
    r = invoke(cli.measure_main, [IMG_A, IMG_B, "--ratio", "0.1628", "-o", out])
    assert r.exit_code == 0, r.stderr
    np.testing.assert_allclose(np.load(out), np.load(meas), rtol=1e-5, atol=1e-6)


def test_measure_existing_output_unchanged_on_error(tmp_path, meas):
    m = copy_pair(meas, tmp_path, "m")
    before = snapshot(tmp_path)
    r = invoke(cli.measure_main, [IMG_A, tmp_path / "gone.jpg", "--ratio", "0.1628", "-o", m, "--overwrite"])
    assert_one_line_error(r, "gone.jpg")
    assert snapshot(tmp_path) == before
    r = invoke(cli.measure_main, [IMG_A, "--ratio", "0.1628", "-o", m])  # without --overwrite: refused first
    assert_one_line_error(r, "exists", "--overwrite")
    assert snapshot(tmp_path) == before


def test_measure_output_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = measure_pair(tmp_path, images=(IMG_A,))
    finally:
        os.umask(old)
    for p in (out, out.with_suffix(".json")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, oct(p.stat().st_mode)


# ------------------------------------------------------------------------------------------ gs-recover refusals: measurements


def test_recover_missing_measurements(tmp_path):
    recover_refused(tmp_path, [tmp_path / "none.npy"], "not found")


def test_recover_missing_sidecar(work):
    tmp, m = work
    m.with_suffix(".json").unlink()
    recover_refused(tmp, [m], "sidecar", "not found")


def test_recover_sidecar_of_another_file(work, tmp_path_factory):
    tmp, m = work
    other = measure_pair(tmp_path_factory.mktemp("other"), extra=["--seed", "1"])  # same shape, other y
    shutil.copyfile(other.with_suffix(".json"), m.with_suffix(".json"))
    recover_refused(tmp, [m], "sha256")


def test_recover_sidecar_not_json(work):
    tmp, m = work
    m.with_suffix(".json").write_text("{\n oops")
    recover_refused(tmp, [m], "sidecar")


def test_recover_not_an_npy(work):
    tmp, m = work
    m.write_bytes(b"hello, not numpy")
    recover_refused(tmp, [m], "npy")


def test_recover_y_truncated_sidecar_untouched(work):
    tmp, m = work
    y = np.load(m)
    rewrite_pair(m, y[:, :-1], sha=False, shape=False)
    recover_refused(tmp, [m], "shape")


def test_recover_y_wrong_length_sha_consistent(work):
    """y shortened and the sidecar's sha256/shape recomputed, but m (and the operator) still say 2000."""
    tmp, m = work
    y = np.load(m)
    rewrite_pair(m, y[:, :-1])
    recover_refused(tmp, [m], f"m={M - 1}", f"m={M}")


def test_recover_y_wrong_length_operator_mismatch(work):
    """Everything updated to m = 1999 except the operator description, which rebuilds a 2000-row A."""
    tmp, m = work
    y = np.load(m)
    rewrite_pair(m, y[:, :-1], m=M - 1)
    recover_refused(tmp, [m], "operator")


def test_recover_operator_n_differs_from_model(work):
    """A sidecar whose A has n = 12287 columns cannot apply to 64 px images (n = 12288)."""
    tmp, m = work
    side = json.loads(m.with_suffix(".json").read_text())
    side["n"] = N - 1
    side["operator"]["n"] = N - 1
    write_sidecar(m.with_suffix(".json"), side)
    recover_refused(tmp, [m], str(N - 1))


@pytest.mark.parametrize("dtype,update_dtype_field", [(np.float64, True), (np.float64, False), (np.float16, True),
                                                       (np.int32, True)])
def test_recover_wrong_dtype(work, dtype, update_dtype_field):
    tmp, m = work
    y = np.load(m).astype(dtype)
    extra = {"dtype": np.dtype(dtype).name} if update_dtype_field else {}
    rewrite_pair(m, y, **extra)
    recover_refused(tmp, [m], "float32")


def test_recover_wrong_dtype_sidecar_untouched(work):
    tmp, m = work
    rewrite_pair(m, np.load(m).astype(np.float64), sha=False, shape=False)
    recover_refused(tmp, [m])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_recover_non_finite_y(work, bad):
    tmp, m = work
    y = np.load(m)
    y[1, 7] = bad
    rewrite_pair(m, y)
    recover_refused(tmp, [m], "nan or inf")


def test_recover_one_dimensional_y(work):
    tmp, m = work
    y = np.load(m)[0]
    rewrite_pair(m, y)
    recover_refused(tmp, [m], "2-d")


def test_recover_wrong_reference_count(work):
    tmp, m = work
    recover_refused(tmp, [m, "--reference", IMG_A], "1 reference", "2 measured")
    recover_refused(tmp, [m, "--reference", IMG_A, "--reference", IMG_B, "--reference", IMG_A], "3 reference")


def test_recover_unreadable_reference(work):
    tmp, m = work
    fake = tmp / "ref.jpg"
    fake.write_text("nope")
    recover_refused(tmp, [m, "--reference", IMG_A, "--reference", fake], "ref.jpg")


def test_recover_dense_matrix_too_big_for_memory(work, monkeypatch):
    tmp, m = work
    monkeypatch.setattr(opmod, "available_memory_bytes", lambda: 1_000_000)
    recover_refused(tmp, [m, "--cut", "1"], "GB")


USAGE_ERRORS = [
    ("recover", ["{m}", "-o", "{tmp}/afile", *TINY], "afile"),          # -o names an existing file
    ("recover", ["{tmp}", "-o", "{tmp}/out", *TINY], "directory"),       # MEASUREMENTS is a folder
    ("recover", ["{m}", "-o", "{tmp}/out", "--cut", "one"], "cut"),     # not an integer
    ("recover", ["{m}", "-o", "{tmp}/out", "--device", "tpu"], "device"),
    ("measure", [str(IMG_A), "--ratio", "a lot", "-o", "{tmp}/x.npy"], "ratio"),
    ("measure", ["{tmp}", "--ratio", "0.1", "-o", "{tmp}/x.npy"], "directory"),  # image is a folder
]


def _usage_invoke(work, which, args):
    tmp, m = work
    (tmp / "afile").write_text("a file")
    args = [a.format(m=m, tmp=tmp) for a in args]
    before = snapshot(tmp)
    r = invoke(cli.recover_main if which == "recover" else cli.measure_main, args)
    return r, tmp, before


@pytest.mark.parametrize("which,args,needle", USAGE_ERRORS)
def test_click_usage_errors_exit_2_and_write_nothing(work, which, args, needle):
    r, tmp, before = _usage_invoke(work, which, args)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.stderr and needle in r.stderr.lower()
    assert snapshot(tmp) == before
    assert not (tmp / "out").exists() and not (tmp / "x.npy").exists()
    no_temp_dirs(tmp)


@pytest.mark.parametrize("which,args,needle", USAGE_ERRORS)
def test_click_usage_errors_are_one_line(work, which, args, needle):
    r, _, _ = _usage_invoke(work, which, args)
    assert_one_line_error(r, needle)


def test_recover_existing_outdir_unchanged_on_error(work):
    tmp, m = work
    out = tmp / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    m.with_suffix(".json").unlink()
    before = snapshot(tmp)
    r = invoke(cli.recover_main, [m, "-o", out, *TINY])
    assert_one_line_error(r, "sidecar")
    assert snapshot(tmp) == before
    no_temp_dirs(tmp)


@pytest.mark.parametrize("args,needles", [
    (["--cut", "5"], ["cut 5", "0..4"]),
    (["--cut", "-1"], ["cut -1", "0..4"]),
    (["--cut", "99"], ["cut 99"]),
    (["--restarts", "0"], ["restarts"]),
    (["--init", "bogus"], ["init"]),
    (["--max-iter", "-1"], ["max-iter"]),
    (["--model", "no-such-model"], ["unknown model", "no-such-model"]),
    (["--model", "../models"], ["unknown model"]),
])
def test_recover_bad_options(work, args, needles):
    tmp, m = work
    recover_refused(tmp, [m, *args], *needles)


@pytest.mark.parametrize("args", [["--max-iter", "0", "--max-fun", "1"], ["--max-iter", "1", "--max-fun", "0"]])
def test_recover_zero_budget_is_refused(work, args):
    tmp, m = work
    recover_refused(tmp, [m, "--cut", "1", *args], "must be >= 1")


def test_recover_unknown_model_named_by_sidecar(work):
    tmp, m = work
    side = json.loads(m.with_suffix(".json").read_text())
    side["model"] = "not-installed"
    write_sidecar(m.with_suffix(".json"), side)
    recover_refused(tmp, [m], "unknown model", "not-installed")


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                    reason="this onnxruntime offers CUDA; the refusal is only testable without it")
def test_recover_device_cuda_without_cuda(work):
    tmp, m = work
    recover_refused(tmp, [m, "--cut", "1", "--device", "cuda"], "cuda")


# ------------------------------------------------------------------------------------------ gs-recover refusals: model files


@pytest.fixture
def model_copy(tmp_path):
    return copy_model(tmp_path / "m")


def _model_args(model_dir: Path, how: str) -> list:
    return ["--models-dir", model_dir.parent] if how == "models-dir" else ["--model", model_dir]


@pytest.mark.parametrize("how", ["models-dir", "path"])
def test_recover_missing_onnx_file(work, model_copy, how):
    tmp, m = work
    (model_copy / "block2.vjp.onnx").unlink()
    recover_refused(tmp, [m, "--cut", "1", *_model_args(model_copy, how)], "missing", "block2.vjp.onnx")


def test_recover_missing_onnx_file_via_env(work, model_copy):
    tmp, m = work
    (model_copy / "block2.vjp.onnx").unlink()
    env = {"GS_ONNX_MODELS": str(model_copy.parent)}
    recover_refused(tmp, [m, "--cut", "1"], "block2.vjp.onnx", env=env)


@pytest.mark.parametrize("how", ["models-dir", "path"])
@pytest.mark.parametrize("victim", ["block1.weights.bin", "block3.fwd.onnx", "block0.vjp.onnx"])
def test_recover_tampered_model_file(work, model_copy, how, victim):
    tmp, m = work
    p = model_copy / victim
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    recover_refused(tmp, [m, "--cut", "1", *_model_args(model_copy, how)], "checksum", victim)


def test_measure_refuses_tampered_model(tmp_path, model_copy):
    p = model_copy / "block1.weights.bin"
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))
    before = snapshot(tmp_path)
    out = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--m", "10", "--model", model_copy, "-o", out])
    assert_one_line_error(r, "checksum")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("evil", ["../evil.onnx", "../../evil.onnx", "sub/../../evil.onnx"])
def test_recover_manifest_path_escaping_folder(work, model_copy, evil):
    tmp, m = work
    # the escaping target exists and even carries the right checksum: confinement alone must refuse it
    target = (model_copy / evil).resolve()
    shutil.copyfile(model_copy / "block1.fwd.onnx", target)

    def fn(raw):
        raw["blocks"][1]["forward"]["file"] = evil
        raw["files"][evil] = raw["files"].pop("block1.fwd.onnx")

    edit_manifest(model_copy, fn)
    line = recover_refused(tmp, [m, "--cut", "1", "--model", model_copy], "escapes")
    assert evil in line


def test_recover_manifest_absolute_path(work, model_copy):
    tmp, m = work
    edit_manifest(model_copy, lambda raw: raw["blocks"][2]["vjp"].__setitem__("file", "/etc/passwd"))
    recover_refused(tmp, [m, "--cut", "1", "--model", model_copy], "/etc/passwd", "inside the model folder")


def test_recover_manifest_weights_escaping_folder(work, model_copy):
    tmp, m = work
    edit_manifest(model_copy, lambda raw: raw["blocks"][3].__setitem__("weights", "../block3.weights.bin"))
    recover_refused(tmp, [m, "--cut", "1", "--model", model_copy], "escapes")


def test_recover_symlink_escaping_folder(work, model_copy):
    """A listed file that is a symlink to outside the folder escapes it too (same bytes, same checksum)."""
    tmp, m = work
    outside = model_copy.parent / "outside.bin"
    shutil.move(model_copy / "block4.weights.bin", outside)
    (model_copy / "block4.weights.bin").symlink_to(outside)
    recover_refused(tmp, [m, "--cut", "1", "--model", model_copy], "escapes")


def test_recover_manifest_not_json(work, model_copy):
    tmp, m = work
    (model_copy / "manifest.json").write_text("{ broken\n more")
    recover_refused(tmp, [m, "--model", model_copy], "manifest")


def test_recover_model_of_another_image_size(work, model_copy):
    """64 px measurements with a model folder whose manifest says 128 px images."""
    tmp, m = work

    def fn(raw):
        raw["tensors"]["x"] = [3, 128, 128]
        raw["image"]["height"] = raw["image"]["width"] = 128
        raw["architecture"]["config"]["image_size"] = 128

    edit_manifest(model_copy, fn)
    recover_refused(tmp, [m, "--cut", "1", "--model", model_copy], "(3, 64, 64)", "(3, 128, 128)")


@pytest.mark.parametrize("edit,needle", [
    (lambda b: b["vjp"]["inputs"].insert(0, "nowhere"), "VJP graph reads unknown tensor 'nowhere'"),
    (lambda b: b["forward"]["outputs"].reverse() if len(b["forward"]["outputs"]) > 1
     else b["forward"]["outputs"].insert(0, "h9"), "forward graph does not map"),
    (lambda b: b["vjp"]["outputs"].append("grad_q"), "must return grad_"),
])
def test_recover_manifest_block_graph_names_checked(work, model_copy, edit, needle):
    tmp, m = work
    edit_manifest(model_copy, lambda raw: edit(raw["blocks"][1]))
    recover_refused(tmp, [m, "--model", model_copy], needle)
