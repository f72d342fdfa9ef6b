"""Shared fixtures: tiny exported models of every architecture (needs the export extra: torch, onnx)."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

# The tests measure 64 px images with the small shipped DCGAN unless they name a model: the project's
# default (the 128 px BEGAN) would make every CLI test generate a 1.5 GB Gaussian A.
os.environ["GS_ONNX_DEFAULT_MODEL"] = "dcgan-digiface"

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models"
SAMPLES = ROOT / "gs_onnx" / "samples"

# A user's clone has no ../shared: every test runs as if there were none. The default data root of
# gs-experiment points at an empty folder for the whole session (so that a test reading a named data set
# without saying so fails here as it would on a clone), and the few tests that need CelebA itself take the
# `celeba_data` fixture, which skips with one line where ../shared/data is absent (CI has it).
SHARED_DATA = ROOT.parent / "shared" / "data"
_NO_DATA = Path(tempfile.mkdtemp(prefix="gs-onnx-no-data-"))
atexit.register(shutil.rmtree, _NO_DATA, True)
os.environ["GS_ONNX_DATA"] = str(_NO_DATA)
os.environ["XDG_DATA_HOME"] = str(_NO_DATA / "xdg")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (minutes of fresh venvs, training, the README's block) run where
    GS_ONNX_SLOW_TESTS=1, as CI sets it; elsewhere they are skipped with that reason, so that the README's test
    command stays short on a 2-core machine."""
    if os.environ.get("GS_ONNX_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: GS_ONNX_SLOW_TESTS=1 runs it (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def celeba_data() -> Path:
    """../shared/data (CelebA crops and aligned faces, COCO), or a skip where the clone has none beside it."""
    if not (SHARED_DATA / "celeba_crops64" / "test").is_dir():
        pytest.skip("needs CelebA in ../shared/data (absent in this clone; CI has it)")
    return SHARED_DATA

# Small widths keep every export and check to a few seconds while keeping each architecture's structure:
# DCGAN's ConvTranspose+BN+ReLU chain, BEGAN's skip connections, the VAE's upsample+conv+BN+LeakyReLU.
TINY = {
    "dcgan": {"ngf": 8},
    "began": {"ch": 16, "image_size": 32},
    "began_noskip_tanh": {"ch": 8, "image_size": 32, "skip": False, "output_activation": "tanh"},
    "vae": {"nz": 32, "widths": [16, 16, 8, 8, 8, 8]},
}


def _randomise_bn(gen):
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return gen


#: The tiny models exported once and committed (exporting them takes over a minute on 2 cores); used only while
#: their fingerprint (the exporter's sources, the tiny settings and the torch/onnx versions) is the current
#: one: any change to gs_export exports them afresh. ``python tests/conftest.py`` refreshes the folder.
TINY_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tiny_models"


#: The export stage's sources that write a generator's folder (the exporter and what it imports): a change to another
#: module of gs_export (the torch methods, the denoiser, the command line) does not change the tiny models.
EXPORT_SOURCES = ("architectures.py", "exporter.py", "vjp.py")


def tiny_fingerprint() -> str:
    import hashlib
    import inspect

    import onnx
    import torch

    h = hashlib.sha256()
    for name in EXPORT_SOURCES:
        f = ROOT / "export" / "gs_export" / name
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(json.dumps(TINY, sort_keys=True).encode())
    h.update(inspect.getsource(_randomise_bn).encode())
    h.update(f"torch {torch.__version__} onnx {onnx.__version__}".encode())
    return h.hexdigest()


def _tiny_generator(key: str):
    import torch
    from gs_export.architectures import build

    torch.manual_seed(0)
    return _randomise_bn(build(key.split("_")[0], **TINY[key])).eval()


def export_tiny_models(root: Path) -> None:
    from gs_export.exporter import export_generator

    for key in TINY:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_generator(_tiny_generator(key), root / key, f"tiny-{key}", provenance={"weights": "random, tests"},
                             untrained=True, check_repeats=2)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{key: (torch generator in eval mode, exported model folder)} for every entry of TINY (a copy per session:
    tests may edit them)."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("tiny_models")
    stamp = TINY_FIXTURES / "FINGERPRINT"
    if stamp.is_file() and stamp.read_text().strip() == tiny_fingerprint():
        for key in TINY:
            shutil.copytree(TINY_FIXTURES / key, root / key)
    else:
        export_tiny_models(root)
    return {key: (_tiny_generator(key), root / key) for key in TINY}


#: A tiny denoiser (the shipped architecture, 4 channels, seeded weights) exported once and committed, like the tiny
#: models; refreshed by ``python tests/conftest.py`` and re-exported in a session whose fingerprint differs.
TINY_DENOISER = Path(__file__).resolve().parent / "fixtures" / "tiny_denoiser"


def tiny_denoiser_net():
    import torch
    from gs_export.denoiser import SmallUNet

    torch.manual_seed(0)
    return SmallUNet(channels=4).eval()


def denoiser_fingerprint() -> str:
    import hashlib

    import onnx
    import torch

    h = hashlib.sha256((ROOT / "export" / "gs_export" / "denoiser.py").read_bytes())
    h.update(f"torch {torch.__version__} onnx {onnx.__version__}".encode())
    return h.hexdigest()


def export_tiny_denoiser(out: Path) -> None:
    import tempfile

    import torch
    from gs_export.denoiser import export

    net = tiny_denoiser_net()
    with tempfile.TemporaryDirectory() as run:
        torch.save({"state_dict": net.state_dict(), "config": net.config}, Path(run) / "denoiser.pt")
        export(run, out, "tiny", provenance={"weights": "random, tests"}, overwrite=True)


@pytest.fixture(scope="session")
def tiny_denoiser(tmp_path_factory):
    """(the torch net, its exported denoiser folder): a copy per session."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("tiny_denoiser") / "tiny"
    stamp = TINY_DENOISER / "FINGERPRINT"
    if stamp.is_file() and stamp.read_text().strip() == denoiser_fingerprint():
        shutil.copytree(TINY_DENOISER / "tiny", out)
    else:
        export_tiny_denoiser(out)
    return tiny_denoiser_net(), out


@pytest.fixture(scope="session")
def shipped():
    from gs_onnx.generator.registry import load

    return load(str(SHIPPED / "dcgan-digiface"))


@pytest.fixture(scope="session")
def dcgan_meas_010(tmp_path_factory):
    """Two bundled faces measured for the shipped dcgan at m/n = 0.1 (read-only: copy before editing)."""
    from click.testing import CliRunner

    from gs_onnx.cli import measure_main

    d = tmp_path_factory.mktemp("meas_dcgan_010")
    imgs = [SAMPLES / "celeba64_182638.jpg", SAMPLES / "celeba64_182639.jpg"]
    r = CliRunner().invoke(measure_main, [*map(str, imgs), "--model", "dcgan", "--ratio", "0.1", "-o",
                                          str(d / "meas.npy")])
    assert r.exit_code == 0, r.output
    return d / "meas.npy"


if __name__ == "__main__":  # refresh the committed tiny models: python tests/conftest.py
    if TINY_FIXTURES.exists():
        shutil.rmtree(TINY_FIXTURES)
    TINY_FIXTURES.mkdir(parents=True)
    export_tiny_models(TINY_FIXTURES)
    (TINY_FIXTURES / "FINGERPRINT").write_text(tiny_fingerprint() + "\n")
    print(f"wrote {TINY_FIXTURES}")
    if TINY_DENOISER.exists():
        shutil.rmtree(TINY_DENOISER)
    TINY_DENOISER.mkdir(parents=True)
    export_tiny_denoiser(TINY_DENOISER / "tiny")
    (TINY_DENOISER / "FINGERPRINT").write_text(denoiser_fingerprint() + "\n")
    print(f"wrote {TINY_DENOISER}")
