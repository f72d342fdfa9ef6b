"""A user's clone and a wheel install: no data beside them, optional extras missing, the messages a newcomer
meets, and documentation that states the code's defaults (issue: the README's promise on a fresh clone)."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gs_onnx.cli import measure_main, recover_main
from gs_onnx.experiment import presets as P
from gs_onnx.cli.experiment import main as experiment

from conftest import ROOT, SAMPLES

ALIGNED = sorted(SAMPLES.glob("celeba_aligned_*.jpg"))


def run(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args])


# ------------------------------------------------------------------------------------ no ../shared


def test_the_suite_reads_no_data_outside_the_clone():
    """The data root the tests see is an empty folder, and no test names ../shared but through the fixture
    that skips without it: so CI, which has ../shared, runs the suite as a clone without it would."""
    root = P.default_data_root()
    assert root == Path(os.environ["GS_ONNX_DATA"]) and not any(root.iterdir())
    for test in Path(__file__).parent.glob("*.py"):
        if test.name in ("conftest.py", Path(__file__).name):
            continue
        text = test.read_text()
        assert "shared/data" not in text and "SHARED_DATA" not in text, test.name


def test_data_root_defaults_to_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("GS_ONNX_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert P.default_data_root() == tmp_path / "xdg" / "gs-onnx" / "data"
    monkeypatch.setenv("GS_ONNX_DATA", str(tmp_path / "mine"))
    assert P.default_data_root() == tmp_path / "mine"


def test_dry_run_without_data_counts_the_tasks_and_says_how_to_get_the_data(tmp_path):
    out = tmp_path / "cs"
    r = run(experiment, ["cs", "--models", "dcgan", "--dry-run", "-o", out])
    assert r.exit_code == 0, r.output
    # 2 datasets x 10 ratios x 3 methods x 20 images, one task per image under the default budget
    assert "cs: 1200 task(s), 1200 not yet in" in r.output
    assert "warning: dataset celeba-test:" in r.output and "gs-experiment data" in r.output
    assert not out.exists()  # a dry run writes nothing


def test_a_real_run_without_data_ends_in_one_line(tmp_path):
    r = run(experiment, ["cs", "--models", "dcgan", "--images", "1", "--ratios", "0.05", "-o", tmp_path / "x"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "gs-experiment data" in r.output
    assert "Traceback" not in r.output


def _fake_celeba(folder: Path) -> dict[int, Path]:
    """A download-like img_align_celeba/ from the bundled aligned faces: two train ids, two test ids."""
    d = folder / "img_align_celeba"
    d.mkdir(parents=True)
    ids = {1: ALIGNED[0], 2: ALIGNED[1], 182638: ALIGNED[2], 182639: ALIGNED[3], 170000: ALIGNED[0]}
    for i, src in ids.items():
        shutil.copy(src, d / f"{i:06d}.jpg")
    return ids


@pytest.mark.parametrize("as_zip", [False, True])
def test_data_lays_out_a_download(tmp_path, as_zip):
    from PIL import Image

    from gs_onnx.experiment.data import CROP64_BOX

    ids = _fake_celeba(tmp_path / "dl")
    src = tmp_path / "dl"
    if as_zip:
        src = tmp_path / "img_align_celeba.zip"
        with zipfile.ZipFile(src, "w") as z:
            for p in (tmp_path / "dl" / "img_align_celeba").iterdir():
                z.write(p, f"img_align_celeba/{p.name}")
    coco = tmp_path / "coco_dl"
    coco.mkdir()
    for p in SAMPLES.glob("coco_*.jpg"):
        shutil.copy(p, coco / p.name)
    root = tmp_path / "data"
    r = run(experiment, ["data", "--celeba", src, "--coco", coco, "--coco-images", "2", "--train", "2", "--test", "2",
                         "--data-root", root, "--no-progress"])
    assert r.exit_code == 0, r.output
    # the train partition's first ids (170000 is a validation id: never taken), the test partition's first ids
    assert sorted(p.name for p in (root / "celeba_aligned/train").iterdir()) == ["000001.jpg", "000002.jpg"]
    assert sorted(p.name for p in (root / "celeba_crops64/test").iterdir()) == ["182638.jpg", "182639.jpg"]
    assert (root / "celeba_aligned/test/182638.jpg").read_bytes() == ids[182638].read_bytes()
    assert len(list((root / "coco/test").iterdir())) == 2
    crop = np.asarray(Image.open(root / "celeba_crops64/train/000002.jpg"), np.float32)
    want = np.asarray(Image.open(ids[2]).convert("RGB").resize((64, 64), Image.BILINEAR, box=CROP64_BOX), np.float32)
    assert crop.shape == (64, 64, 3) and np.abs(crop - want).mean() < 2.0  # JPEG re-encoding only
    assert json.loads((root / "LAYOUT.json").read_text())["written"]["celeba_crops64/train"] == 2
    # the presets find them there: a dry run without warnings
    r = run(experiment, ["cs", "--models", "dcgan", "--datasets", "celeba-test,coco", "--images", "2",
                         "--ratios", "0.05", "--data-root", root, "--dry-run", "-o", tmp_path / "o"])
    assert r.exit_code == 0 and "warning" not in r.output and "cs: 12 task(s)" in r.output, r.output
    # a second layout into the same folders is refused unless asked
    r = run(experiment, ["data", "--celeba", src, "--train", "2", "--test", "2", "--data-root", root])
    assert r.exit_code == 2 and "--overwrite" in r.output


@pytest.mark.parametrize("args, needle", [
    (["--celeba", "nowhere"], "no such folder or zip file"),
    (["--celeba", "{dl}", "--train", "99"], "fewer than the 99 asked for (--train)"),
    ([], "give --celeba and/or --coco"),
])
def test_data_errors_are_one_line(tmp_path, args, needle):
    _fake_celeba(tmp_path / "dl")
    args = [a.format(dl=tmp_path / "dl") for a in args]
    r = run(experiment, ["data", *args, "--data-root", tmp_path / "data"])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "data" / "celeba_aligned").exists()


def test_crop64_reproduces_the_projects_copy(celeba_data):
    """The project's 64 px CelebA crops (the DCGAN's training data) are the centre 108 px square, bilinear."""
    from PIL import Image

    from gs_onnx.experiment.data import CROP64_BOX

    for k in range(8):  # celeba_aligned/train holds ids 000001... in order at its start
        a = Image.open(celeba_data / "celeba_aligned" / "train" / f"{k:05d}.jpg").convert("RGB")
        c = np.asarray(Image.open(celeba_data / "celeba_crops64" / "train" / f"{k + 1:06d}.jpg"), np.float32)
        ours = np.asarray(a.resize((64, 64), Image.BILINEAR, box=CROP64_BOX), np.float32)
        assert np.abs(ours - c).mean() < 3.0


# ------------------------------------------------------------------------------- gs-experiment


TINY = ["--models", "dcgan", "--datasets", SAMPLES, "--images", "1", "--ratios", "0.05", "--no-progress"]


def test_experiment_runs_the_models_plan_as_gs_recover_does(tmp_path):
    """The default budget: one task per image running the plan (dcgan: 1 restart x 100 iterations, here capped
    at 15); its PSNR equals gs-recover's on the same face, operator, noise and starts, for gs and for gs-tv; the
    summary names the plan."""
    out = tmp_path / "cs"
    r = run(experiment, ["cs", *TINY, "--methods", "gs,gs-tv", "--max-iter", "15", "-o", out])
    assert r.exit_code == 0, r.output
    rows = {json.loads(line)["method"]: json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()}
    row = rows["gs"]
    assert row["budget"]["plan"] == "auto" and len(row["restarts_run"]) == 1 and row["budget"]["max_iter"] == 15
    assert "auto: 1 x 15" in (out / "summary.md").read_text()
    img = sorted(SAMPLES.glob("*.jpg"))[0]
    meas = tmp_path / "meas.npy"
    assert run(measure_main, [img, "--model", "dcgan", "--m", row["m"], "-o", meas, "-q"]).exit_code == 0
    for method, args in (("gs", ["--method", "gs"]), ("gs-tv", ["--method", "gs-tv"])):
        r = run(recover_main, [meas, *args, "--max-iter", "15", "--reference", img, "-o", tmp_path / method, "-q"])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / method / "report.json").read_text())
        assert rep["method"] == method
        assert rep["images"][0]["psnr"] == pytest.approx(rows[method]["psnr"], abs=1e-3)
    assert rows["gs-tv"]["psnr"] > rows["gs"]["psnr"]
    assert rows["gs-tv"]["gs_psnr"] == pytest.approx(rows["gs"]["psnr"], abs=1e-4)  # its anchor is gs's image


def test_paper_budget_runs_one_task_per_restart(tmp_path):
    r = run(experiment, ["cs", *TINY, "--methods", "gs", "--budget", "paper", "--dry-run", "-o", tmp_path / "x"])
    assert r.exit_code == 0 and "cs: 3 task(s)" in r.output, r.output


def test_ratio_and_list_errors_name_the_option(tmp_path):
    r = run(experiment, ["cs", "--models", "dcgan", "--ratios", "abc", "--dry-run", "-o", tmp_path / "x"])
    assert r.exit_code == 2 and "--ratios 'abc' is not a comma-separated list of numbers" in r.output
    r = run(experiment, ["superres", "--models", "dcgan", "--factors", "x4", "--dry-run", "-o", tmp_path / "x"])
    assert r.exit_code == 2 and "--factors 'x4'" in r.output


# ---------------------------------------------------------------------------------- gs-recover


@pytest.fixture
def meas(tmp_path, dcgan_meas_010):
    for suffix in (".npy", ".json"):
        shutil.copy(dcgan_meas_010.with_suffix(suffix), tmp_path / f"meas{suffix}")
    return tmp_path / "meas.npy"


def test_default_output_folder_names_the_method(meas):
    r = run(recover_main, [meas, "--method", "lasso-dct", "--max-iter", "5", "-q"])
    assert r.exit_code == 0, r.output
    assert (meas.parent / "meas-recovered-lasso-dct" / "report.json").is_file()
    r = run(recover_main, [meas, "--model", "dcgan", "--max-iter", "3", "-q"])  # gs beside it: no clash
    assert r.exit_code == 0, r.output
    assert (meas.parent / "meas-recovered" / "report.json").is_file()


def test_the_residual_is_read_against_the_declared_noise(meas):
    r = run(recover_main, [meas, "--model", "dcgan", "--max-iter", "3", "-o", meas.parent / "o"])
    assert r.exit_code == 0, r.output
    assert re.search(r"image 1/2: residual [0-9.]+ x the noise, [0-9.]+ % of \|\|y\|\|", r.output)
    rep = json.loads((meas.parent / "o" / "report.json").read_text())
    row = rep["images"][0]
    expected = rep["sigma"] * np.sqrt(rep["m"])
    assert row["fit"]["ratio"] == pytest.approx(row["measurement_error"] / expected, rel=1e-3)


@pytest.mark.parametrize("what, needle", [
    ("image", "is an image, not a measurement file: measure it first (gs-measure"),
    ("renamed image", "is an image, not a measurement file"),
    ("began", "but model began makes (3, 128, 128): use --model dcgan"),
])
def test_newcomer_mistakes_say_what_to_do(meas, what, needle):
    if what == "image":
        args = [SAMPLES / "celeba64_182638.jpg"]
    elif what == "renamed image":
        p = meas.parent / "photo.npy"
        shutil.copy(SAMPLES / "celeba64_182638.jpg", p)
        args = [p]
    else:
        args = [meas, "--model", "began"]
    r = run(recover_main, args)
    assert r.exit_code == 2 and needle in r.output and r.output.count("\n") == 1, r.output


def test_noise_error_lists_auto(tmp_path):
    r = run(measure_main, [SAMPLES / "celeba64_182638.jpg", "--model", "dcgan", "--ratio", "0.1", "--noise", "loud",
                           "-o", tmp_path / "m.npy"])
    assert r.exit_code == 2 and "--noise must be 'auto'" in r.output


# ------------------------------------------------------------------------------------------ docs


@pytest.mark.parametrize("page", ["docs/methods.md", "docs/experiments.md", "docs/cli.md"])
def test_documented_defaults_are_the_codes(page):
    """The tables of defaults in the docs are generated from the CLI and the shipped manifests; a default
    changed in the code without the page fails here (python -m gs_onnx.cli.docs --write PAGE mends it)."""
    from gs_onnx.cli.docs import render

    text = (ROOT / page).read_text()
    assert "<!-- generated:" in text
    assert render(text) == text, f"{page} is out of date: python -m gs_onnx.cli.docs --write {page}"
