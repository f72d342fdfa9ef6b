"""Hardening, round three, second pass: classes an independent corpus written from issue 39's findings still found
(docs/threat-model.md), one test per class.

* lost data, gs-measure: an output never replaces an image being measured, never goes into a model folder, and
  ``--overwrite`` replaces (and an earlier run's stale previews removal removes) only what an earlier gs-measure
  wrote; its stale-preview clean-up used to delete any ``<stem>_NNN.png``, inputs included, even without
  ``--overwrite``;
* lost data, results folders: no command writes into a model folder (gs-experiment made a results folder there);
* recovery folders, the operator: the interface's operator description rebuilt must give the folder's own tables
  (an edited seed, type or kernel is refused by rule 7), and after the run the graph's ``residual`` (rule 7's
  SHOULD);
* hangs: Ctrl-C ends a recovery graph whose loop never ends (a run held ONNX Runtime, and the interrupt, forever);
* the fit: a declared noise that explains what varies in the measurements is ``uninformative`` even around a mean;
* gs-demo: its output published as every command's is (its own folder replaced whole, another refused);
* permissions: a results folder gets the umask's permissions, not mkdtemp's 0700.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gs_onnx import cli
from gs_onnx.cli.recovery import main as export_recovery
from gs_onnx.errors import GSError
from gs_onnx.generator import registry

from test_cli import IMG_A, assert_one_line_error, invoke

MODELS = Path(registry.__file__).resolve().parents[2] / "models"


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- lost data: gs-measure

def test_gs_measure_never_removes_or_replaces_files_it_did_not_write(tmp_path):
    """Files named like previews (``face_002.png``), one of them the image measured: a Gaussian measurement to
    face.npy used to delete both (the stale-preview clean-up); a mask measurement over them, or --overwrite onto a
    file that is no measurement, replaced them."""
    for i in (2, 3):
        shutil.copy(IMG_A, tmp_path / f"face_{i:03d}.png")
    user = _digest(tmp_path)
    r = invoke(cli.measure_main, [tmp_path / "face_002.png", "--model", "dcgan", "--ratio", "0.05", "-o",
                                  tmp_path / "face.npy", "-q"])
    assert r.exit_code == 0, r.stderr
    assert {k: v for k, v in _digest(tmp_path).items() if k in user} == user
    # previews of two images would be face_001.png, face_002.png: the second is an image being measured
    r = invoke(cli.measure_main, [tmp_path / "face_002.png", tmp_path / "face_003.png", "--model", "dcgan",
                                  "--operator", "mask", "-o", tmp_path / "face.npy", "--overwrite"])
    assert_one_line_error(r, "is one of the images to measure")
    # --overwrite onto a .npy that no gs-measure wrote (no measurement sidecar beside it)
    np.save(tmp_path / "mine.npy", np.arange(3.0))
    (tmp_path / "mine.json").write_text('{"my": "notes"}')
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", tmp_path / "mine.npy",
                                  "--overwrite"])
    assert_one_line_error(r, "was not written by gs-measure")
    assert (tmp_path / "mine.json").read_text() == '{"my": "notes"}'
    assert {k: v for k, v in _digest(tmp_path).items() if k in user} == user


def test_gs_measure_over_an_earlier_measurement_removes_only_its_own_previews(tmp_path):
    out = tmp_path / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, IMG_A, IMG_A, "--model", "dcgan", "--operator", "mask", "-o", out, "-q"])
    assert r.exit_code == 0 and len(list(tmp_path.glob("m_*.png"))) == 3
    shutil.copy(IMG_A, tmp_path / "m_004.png")          # the user's file, named like a fourth preview
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", out, "--overwrite", "-q"])
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("m_*.png")) == ["m_004.png"]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_nothing_is_written_into_a_model_folder(tmp_path, where):
    """gs-measure -o MODEL/x.npy, gs-recover -o MODEL/sub, gs-export recovery -o MODEL (--overwrite), gs-experiment
    -o MODEL/sub: refused, the model folder unchanged byte for byte."""
    from gs_onnx.generator import denoiser, manifest
    from gs_onnx.io.paths import MODEL_FORMATS

    assert set(MODEL_FORMATS) == {manifest.FORMAT, denoiser.FORMAT}
    models = tmp_path / "mm"
    shutil.copytree(MODELS / "dcgan", models / "dcgan")
    before = _digest(models)
    meas = tmp_path / "m.npy"
    assert invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", meas, "-q"]).exit_code == 0
    if where == "file":
        r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o",
                                      models / "dcgan" / "manifest.npy", "--overwrite"])
        assert_one_line_error(r, "lies inside the model folder")
    else:
        r = invoke(cli.recover_main, [meas, "--models-dir", models, "--method", "gs", "--max-iter", "2", "-o",
                                      models / "dcgan" / "results"])
        assert_one_line_error(r, "lies inside the model folder")
        r = invoke(export_recovery, ["--measurements", meas, "--models-dir", models, "--method", "gs", "--max-iter",
                                     "2", "-o", models / "dcgan", "--overwrite"])
        assert_one_line_error(r, "is the model folder")
        from gs_onnx.experiment.results import ResultsFile   # gs-experiment's results folder

        with pytest.raises(GSError, match="lies inside the model folder"):
            ResultsFile(models / "dcgan" / "results")
    assert _digest(models) == before


# ------------------------------------------------------------------------------- recovery folders: the operator

@pytest.fixture(scope="module")
def mask_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("opfold")
    meas = d / "m.npy"
    r = invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "mask", "--keep", "0.3", "-o", meas, "-q"])
    assert r.exit_code == 0, r.stderr
    r = invoke(export_recovery, ["--measurements", meas, "--method", "gs", "--restarts", "1", "--max-iter", "3",
                                 "-o", d / "fold"])
    assert r.exit_code == 0, r.stderr
    return d / "fold"


@pytest.mark.parametrize("edit,needle", [
    ({"seed": 7}, "op_mask_kept is not the mask operator's table"),
    ({"type": "box", "box": [8, 8, 32, 32]}, "box"),
])
def test_an_edited_operator_description_is_refused(tmp_path, mask_folder, edit, needle):
    """recovery.json is not hashed (it holds the hashes): an operator description edited consistently with m and
    n still disagrees with the tables its graph is fed, which the rebuilt operator shows (rule 7)."""
    fold = tmp_path / "fold"
    shutil.copytree(mask_folder, fold)
    iface = json.loads((fold / "recovery.json").read_text())
    iface["operator"].update(edit)
    (fold / "recovery.json").write_text(json.dumps(iface))
    r = invoke(cli.recover_main, [fold, "-o", tmp_path / "o"])
    assert_one_line_error(r, needle, "(rule 7)")
    assert not (tmp_path / "o").exists()


def test_a_graph_whose_residual_is_not_the_described_operators_is_refused(mask_folder):
    """After the run: the described operator recomputes ||A image - y||; a graph that runs another operator (in
    constants no table shows) reports another residual."""
    from gs_onnx.solve.folder_check import check_residual, open_folder
    from gs_onnx.solve.recovery_graph import GraphRecovery

    graph, inputs, iface, op = open_folder(mask_folder)
    out = GraphRecovery(graph, "cpu", 1).run(inputs, chunk=2)
    mine = check_residual(op, inputs, out)
    assert mine == pytest.approx(float(out["residual"]), rel=1e-5)
    with pytest.raises(GSError, match="does not run that operator"):
        check_residual(op, inputs, {**out, "residual": np.float64(float(out["residual"]) * 1.01 + 1e-3)})


def test_the_documented_tables_are_the_registered_operators(tmp_path):
    """Rule 7's table of op_* prefixes (docs/recovery-graph.md and examples/web/rules.mjs, which JavaScript readers
    cannot derive) against what each registered operator with an ONNX form feeds a graph."""
    import re

    from gs_onnx.physics import registry as operators
    from gs_onnx.physics.cs import GaussianOperator, SubsampledDCTOperator
    from gs_onnx.physics.fourier import Fourier
    from gs_onnx.physics.image import Blur, Box, Downsample, IdentityOperator, Mask
    from gs_onnx.physics.sidecar import lifted_tables

    shape = (3, 16, 16)
    samples = [GaussianOperator(m=20, n=768, seed=0), SubsampledDCTOperator(m=40, n=768, seed=0),
               IdentityOperator(shape), Mask(shape, keep=0.3, seed=0), Box(shape, (2, 2, 8, 8)),
               Blur(shape, sigma=1.5), Downsample(shape, factor=4), Downsample(shape, factor=4, kernel="gaussian"),
               Fourier(shape, keep=0.25, seed=0)]
    js = Path(__file__).resolve().parents[1] / "examples" / "web" / "rules.mjs"
    body = re.search(r"OPERATOR_TABLES = \{(.*?)\};", js.read_text(), re.S).group(1)
    table = {k: re.findall(r"'([^']+)'", v) for k, v in re.findall(r"(\w+): \[([^\]]*)\]", body)}
    doc = (Path(__file__).resolve().parents[1] / "docs" / "recovery-graph.md").read_text()
    seen = set()
    for op in samples:
        kind = op.describe()["type"]
        seen.add(kind)
        names = lifted_tables(op)
        assert all(any(n.startswith(p) for p in table[kind]) for n in names), (kind, sorted(names))
        for p in table[kind]:
            assert f"`{p}*`" in doc, p
    public = {k for k in operators() if k not in ("adjoint", "compose")}
    assert seen == public == set(table), (seen, public, set(table))


# ------------------------------------------------------------------------------------------------------ hangs

def endless(src: Path, fold: Path) -> Path:
    """A copy of the recovery folder ``src`` whose graph loops for ever inside one run: every Loop's trip count
    10^15 and its condition always true, the checksums recomputed (they prove integrity, not intent)."""
    import onnx

    shutil.copytree(src, fold)
    m = onnx.load(str(fold / "recovery.onnx"))
    for node in [n for n in m.graph.node if n.op_type == "Loop"]:
        m.graph.initializer.append(onnx.helper.make_tensor(node.name + "_M", onnx.TensorProto.INT64, [], [10 ** 15]))
        node.input[0] = node.name + "_M"
        body = next(a for a in node.attribute if a.name == "body").g
        cond = body.output[0].name
        for n in body.node:
            n.output[:] = [o + "_was" if o == cond else o for o in n.output]
        body.node.append(onnx.helper.make_node("Constant", [], [cond], value=onnx.helper.make_tensor(
            "t", onnx.TensorProto.BOOL, [], [True])))
    onnx.save(m, str(fold / "recovery.onnx"))
    iface = json.loads((fold / "recovery.json").read_text())
    iface["files"] = {k: hashlib.sha256((fold / k).read_bytes()).hexdigest() for k in iface["files"]}
    (fold / "recovery.json").write_text(json.dumps(iface))
    return fold


def test_ctrl_c_ends_a_recovery_graph_that_never_stops(tmp_path, mask_folder):
    """A folder whose Loop runs 10^15 times with a condition that never falls, its checksums recomputed (they prove
    integrity, not intent): one run of the session never returns. Ctrl-C ends it in seconds, exit 130, nothing
    written. It used to be held until the run returned: never."""
    import os
    import signal
    import subprocess
    import sys
    import time

    fold = endless(mask_folder, tmp_path / "fold")
    exe = Path(sys.executable).parent / "gs-recover"
    p = subprocess.Popen([str(exe), str(fold), "-o", str(tmp_path / "o")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(6)
    assert p.poll() is None, p.communicate()
    os.killpg(p.pid, signal.SIGINT)
    t = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and time.time() - t < 10, (p.returncode, time.time() - t, err)
    assert "Traceback" not in err and "terminate called" not in err, err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".gs-*"))


# ------------------------------------------------------------------------------------------------------ the fit

def test_pure_noise_declared_as_noise_about_a_mean_proves_nothing(tmp_path):
    """Pixels replaced by noise of std 0.3 about 0.5, the sidecar re-signed declaring 0.25: ||y|| is mostly the mean,
    which any constant image explains, so against ||y|| the claim looked informative and --strict passed; against
    the spread of y it is uninformative, and --strict exits 2."""
    from gs_onnx.io.measurement import read_measurements, write_measurements

    m = tmp_path / "m.npy"
    assert invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--operator", "box", "-o", m, "-q"]).exit_code == 0
    y, side = read_measurements(m)
    fields = {k: v for k, v in side.items() if k not in ("format", "format_version", "shape", "dtype", "sha256",
                                                         "meta_sha256")}
    fields["sigma"] = 0.25
    noise = tmp_path / "noise.npy"
    write_measurements(noise, (np.random.default_rng(0).standard_normal(y.shape) * 0.3 + 0.5).astype(np.float32),
                       fields)
    r = invoke(cli.recover_main, [noise, "--method", "tv", "-o", tmp_path / "o", "--strict"])
    assert_one_line_error(r, "--strict", "explains most of their measurements")
    assert json.loads((tmp_path / "o" / "report.json").read_text())["images"][0]["fit"]["verdict"] == "uninformative"


def test_gs_demo_replaces_only_its_own_folder(tmp_path):
    """gs-demo wrote side_by_side.png and demo.json into any -o (a model folder, a folder of the user's files
    named so) and left a half-written folder on failure. It now publishes like every command: its own folder
    (and an older gs-demo's, its two files only) is replaced whole, run after run; another is refused before any
    work."""
    from gs_onnx.cli.demo import main as demo

    tiny = ["--model", "dcgan", "--restarts", "1", "--max-iter", "2", "-q"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "demo.json").write_text("my notes")
    (mine / "thesis.tex").write_text("years of work")
    r = invoke(demo, [*tiny, "-o", mine])
    assert_one_line_error(r, "was not written by gs-onnx")
    assert (mine / "demo.json").read_text() == "my notes"
    models = tmp_path / "mm"
    shutil.copytree(MODELS / "dcgan", models / "dcgan")
    r = invoke(demo, [*tiny, "-o", models / "dcgan"])
    assert_one_line_error(r, "is the model folder")
    old = tmp_path / "old"                     # what an older gs-demo left: adopted
    old.mkdir()
    (old / "demo.json").write_text("{}")
    for _ in range(2):
        r = invoke(demo, [*tiny, "-o", old])
        assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in old.iterdir()) == [".gs-output", "demo.json", "side_by_side.png"]


def test_results_folders_get_the_umasks_permissions(tmp_path):
    """A results folder is its staging folder renamed, and mkdtemp makes that 0700: a results folder on a shared
    machine was readable by its owner only, its files by everyone the umask allows."""
    import os
    import stat

    meas = tmp_path / "m.npy"
    assert invoke(cli.measure_main, [IMG_A, "--model", "dcgan", "--ratio", "0.05", "-o", meas, "-q"]).exit_code == 0
    old = os.umask(0o022)
    try:
        r = invoke(cli.recover_main, [meas, "--method", "gs", "--max-iter", "2", "-o", tmp_path / "o", "-q"])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "o").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "o" / "report.json").stat().st_mode) == 0o644
