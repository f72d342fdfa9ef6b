"""What a new user meets first: an installed wheel that carries the models, the headline command as typed (no
-o), versions everywhere, help that ends with examples, progress, pictures, and one-line errors where an
extra is missing."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gs_onnx import cli
from gs_onnx.generator import registry
from gs_onnx.metrics import ssim

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLES = ROOT / "gs_onnx" / "samples"
IMG = SAMPLES / "celeba64_182638.jpg"
COMMANDS = ("gs-recover", "gs-measure", "gs-models", "gs-experiment", "gs-demo", "gs-export", "gs-train")


def run(args, cwd, env=None, timeout=300, drop=()):
    e = {k: v for k, v in os.environ.items() if k not in ("GS_ONNX_MODELS", "PYTHONPATH", *drop)}
    e.update(env or {})
    return subprocess.run([str(a) for a in args], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_version_and_help_with_examples_on_every_command(cmd, tmp_path):
    p = run([BIN / cmd, "--version"], tmp_path)
    assert p.returncode == 0 and re.search(r"\d+\.\d+", p.stdout), p.stderr
    p = run([BIN / cmd, "-h"], tmp_path)
    assert p.returncode == 0 and "Examples:" in p.stdout, p.stdout + p.stderr


def test_every_experiment_subcommand_has_help_and_only_its_options(tmp_path):
    from gs_onnx.cli import experiment as ecli

    for name, cmd in ecli.main.commands.items():
        r = CliRunner().invoke(ecli.main, [name, "-h"])
        assert r.exit_code == 0 and "Examples:" in r.output, name
        opts = {p.name for p in cmd.params}
        if name == "samples":
            assert not {"ratios", "datasets", "restarts", "steps"} & opts
        if name == "cs":
            assert not {"steps", "finetune_steps", "count", "untrained"} & opts


@pytest.mark.slow
def test_python_m_gs_onnx_is_the_same_tool(tmp_path):
    p = run([sys.executable, "-m", "gs_onnx", "--help"], tmp_path)
    assert p.returncode == 0 and "recover" in p.stdout and "measure" in p.stdout and "Examples:" in p.stdout
    p = run([sys.executable, "-m", "gs_onnx", "--version"], tmp_path)
    assert p.returncode == 0 and "gs-onnx" in p.stdout
    p = run([sys.executable, "-m", "gs_onnx", "measure", IMG, "--model", "dcgan", "--ratio", "0.05"], tmp_path)
    assert p.returncode == 0, p.stderr
    args = ["--model", "dcgan", "--cut", "1", "--restarts", "1", "--max-iter", "4", "--budget", "paper"]
    a = run([sys.executable, "-m", "gs_onnx", "recover", "meas.npy", *args, "-o", "a"], tmp_path)
    b = run([BIN / "gs-recover", "meas.npy", *args, "-o", "b"], tmp_path)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ra, rb = (json.loads((tmp_path / d / "report.json").read_text()) for d in "ab")
    assert ra["images"][0]["objective"] == rb["images"][0]["objective"]
    p = run([sys.executable, "-m", "gs_onnx", "bogus"], tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("error:") and len(p.stderr.splitlines()) == 1


@pytest.mark.slow
def test_headline_command_without_output_folder(tmp_path):
    """gs-recover --model M --cut C meas.npy: the output goes beside the measurements, is printed, and is not
    overwritten by a second run unless --overwrite."""
    p = run([BIN / "gs-measure", IMG, "--model", "dcgan", "--ratio", "0.05"], tmp_path)
    assert p.returncode == 0 and (tmp_path / "meas.npy").is_file(), p.stderr
    args = [BIN / "gs-recover", "--model", "dcgan", "--cut", "1", "meas.npy", "--max-iter", "5", "--restarts", "1"]
    p = run(args, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "meas-recovered" / "report.json").is_file() and "meas-recovered" in p.stdout
    p = run(args, tmp_path)
    assert p.returncode == 2 and "--overwrite" in p.stderr and len(p.stderr.splitlines()) == 1
    p = run(args + ["--overwrite", "-q"], tmp_path)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == ""
    p = run([BIN / "gs-measure", IMG, "--model", "dcgan", "--ratio", "0.05"], tmp_path)  # meas.npy exists
    assert p.returncode == 2 and "--overwrite" in p.stderr


def test_reports_record_versions_and_provenance(tmp_path):
    r = CliRunner().invoke(cli.measure_main, [str(IMG), "--model", "dcgan", "--ratio", "0.05", "-o",
                                              str(tmp_path / "m.npy")])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "m.json").read_text())
    r = CliRunner().invoke(cli.recover_main, [str(tmp_path / "m.npy"), "--max-iter", "3", "--restarts", "1",
                                              "-o", str(tmp_path / "out"), "--reference", str(IMG)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    import gs_onnx
    import onnxruntime

    for prov in (side["provenance"], rep["provenance"]):
        assert prov["gs_onnx"] == gs_onnx.__version__ and prov["onnxruntime"] == onnxruntime.__version__
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", prov["utc"]) and prov["command"]
    assert rep["provenance"]["provider"] == "CPUExecutionProvider"
    # the comparison picture: truth | recovery, labelled, and a contact sheet
    with Image.open(tmp_path / "out" / "compare_001.png") as im:
        assert im.size[0] >= 2 * 128 and im.size[1] > 128
    assert (tmp_path / "out" / "contact_sheet.png").is_file()
    assert 0 < rep["images"][0]["ssim"] <= 1 and rep["ssim_mean"] == rep["images"][0]["ssim"]


def test_progress_bar_reaches_100_percent_and_quiet_is_quiet(tmp_path):
    r = CliRunner().invoke(cli.measure_main, [str(IMG), str(IMG), "--model", "dcgan", "--ratio", "0.05", "-o",
                                              str(tmp_path / "m.npy")])
    assert r.exit_code == 0
    r = CliRunner().invoke(cli.recover_main, [str(tmp_path / "m.npy"), "--max-iter", "3", "--restarts", "2",
                                              "--progress", "--batch", "none", "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "100%" in r.stderr and "image 2/2" in r.stderr and "restart" in r.stderr and "2.00/2" in r.stderr
    assert "image 1/2:" in r.stdout and "image 2/2:" in r.stdout  # the same numbering in bar and result lines
    r = CliRunner().invoke(cli.recover_main, [str(tmp_path / "m.npy"), "--max-iter", "3", "--restarts", "1", "-q",
                                              "-o", str(tmp_path / "q")])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""


def test_gs_models_with_none_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "SHIPPED", tmp_path / "nothing")
    monkeypatch.delenv("GS_ONNX_MODELS", raising=False)
    r = CliRunner().invoke(cli.models_main, [])
    assert r.exit_code == 2 and "no models found" in r.stderr and "nothing" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = CliRunner().invoke(cli.models_main, ["--models-dir", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "--models-dir" in r.stderr


def test_ssim_equals_scikit_image_and_is_sane():
    rng = np.random.default_rng(0)
    x = rng.random((3, 64, 64))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(y, x) == pytest.approx(ssim(x, y), abs=1e-12)
    assert ssim(np.clip(x + 0.3 * rng.standard_normal(x.shape), 0, 1), x) < ssim(y, x) < 1
    skm = pytest.importorskip("skimage.metrics")
    ref = skm.structural_similarity(y, x, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    assert ssim(y, x) == pytest.approx(ref, abs=1e-10)


BLOCK = textwrap.dedent(r'''
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}")
    sys.meta_path.insert(0, Block())
''')


def test_export_and_train_without_torch_end_in_one_line(tmp_path):
    for entry in ("export_main", "train_main"):
        code = "BLOCKED = ('torch',)\n" + BLOCK + f"from gs_export.entry import {entry}\n{entry}()"
        p = run([sys.executable, "-c", code], tmp_path)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.splitlines()) == 1 and "pip install 'gs-onnx[export]'" in p.stderr


def test_plots_without_matplotlib_keep_results_and_summary(tmp_path):
    code = ("BLOCKED = ('matplotlib',)\n" + BLOCK + "import sys\nfrom gs_onnx.cli.experiment import main\n"
            f"sys.argv = ['gs-experiment', 'samples', '--models', 'dcgan', '--count', '2', '--cuts', '1', '-o', "
            f"{str(tmp_path / 'exp')!r}]\nmain()")
    p = run([sys.executable, "-c", code], tmp_path)
    # the work is done and kept: a warning line, exit 0 (plots are an optional extra)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    warnings_ = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings_) == 1 and "pip install 'gs-onnx[plot]'" in warnings_[0]
    assert not [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert (tmp_path / "exp" / "results.jsonl").is_file() and (tmp_path / "exp" / "summary.md").is_file()
    assert not list((tmp_path / "exp").glob("*.png"))


def test_library_code_never_prints():
    """Only the command-line modules write to the terminal; the library logs through ``logging``."""
    pkg = ROOT / "gs_onnx"
    allowed = {pkg / "io" / "progress.py"} | set((pkg / "cli").glob("*.py"))
    for f in pkg.rglob("*.py"):
        if f in allowed:
            continue
        text = f.read_text()
        assert not re.search(r"(^|[^\w.])print\(", text), f
        assert "click.echo" not in text, f


@pytest.mark.slow
def test_built_wheel_in_a_fresh_venv_carries_the_models(tmp_path):
    """Build the wheel, install it in a fresh virtual environment outside the repository, and run the
    first commands from an empty folder: the four shipped models are there, and the headline recovery
    works without -o."""
    wheels = tmp_path / "wheels"
    p = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, ROOT],
            tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = wheels.glob("gs_onnx-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    vbin = env_dir / "bin"
    p = run([vbin / "pip", "install", "-q", f"{wheel}[cpu]"], tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    work = tmp_path / "empty"
    work.mkdir()
    p = run([vbin / "gs-models", "--json"], work)
    assert p.returncode == 0, p.stderr
    names = {row["name"] for row in json.loads(p.stdout)}
    assert {"began", "dcgan", "dcgan-digiface", "vae"} <= names
    assert all(str(env_dir) in row["path"] for row in json.loads(p.stdout))  # from the install, not the repo
    p = run([vbin / "gs-measure", IMG, "--model", "dcgan", "--ratio", "0.05"], work)
    assert p.returncode == 0, p.stderr
    p = run([vbin / "gs-recover", "--model", "dcgan", "--cut", "1", "meas.npy", "--max-iter", "5", "--restarts", "1"],
            work)
    assert p.returncode == 0, p.stderr
    assert (work / "meas-recovered" / "recovered_001.png").is_file()
    p = run([vbin / "gs-recover", "--version"], work)
    assert p.returncode == 0 and "gs-onnx" in p.stdout
    p = run([vbin / "python", "-m", "gs_onnx", "--help"], work)
    assert p.returncode == 0 and "recover" in p.stdout
    # the experiments from a wheel with no data anywhere: a dry run counts the tasks and says how to get the data
    env = {k: v for k, v in os.environ.items() if k != "GS_ONNX_DATA"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    p = subprocess.run([str(vbin / "gs-experiment"), "cs", "--models", "dcgan", "--dry-run"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "cs: 1200 task(s)" in p.stdout, p.stderr
    assert str(tmp_path / "xdg" / "gs-onnx" / "data") in p.stderr and "gs-experiment data" in p.stderr


@pytest.mark.slow
def test_readme_using_it_block_runs_as_written(tmp_path):
    """The README's "Using it" block, run line by line with bash -e in a folder that looks like the repository
    root after command 1 (the .venv and the bundled samples where the block expects them)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using it"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    venv_dir = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv_dir)
    (tmp_path / "gs_onnx").mkdir()
    (tmp_path / "gs_onnx" / "samples").symlink_to(SAMPLES)
    p = run(["bash", "-e", "-c", block], tmp_path, timeout=900, drop=("GS_ONNX_DEFAULT_MODEL",))
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    rep = json.loads((tmp_path / "meas-recovered" / "report.json").read_text())
    assert rep["model"] == "began" and rep["cut"] == 2
    rep = json.loads((tmp_path / "faces-recovered" / "report.json").read_text())
    assert rep["model"] == "dcgan" and all(r["psnr"] > 20 for r in rep["images"])


def test_pyproject_lists_every_runtime_subpackage():
    """A subpackage missing from pyproject's explicit list works in an editable install and breaks every wheel."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "gs_onnx").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
