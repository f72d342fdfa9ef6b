"""Shared fixtures: tiny exported models of every architecture (needs the export extra: torch, onnx)."""
from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{key: (torch generator in eval mode, exported model folder)} for every entry of TINY."""
    torch = pytest.importorskip("torch")
    from gs_export.architectures import build
    from gs_export.exporter import export_generator

    root = tmp_path_factory.mktemp("tiny_models")
    out = {}
    for key, cfg in TINY.items():
        arch = key.split("_")[0]
        torch.manual_seed(0)
        gen = _randomise_bn(build(arch, **cfg)).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_generator(gen, root / key, f"tiny-{key}", provenance={"weights": "random, tests"},
                             untrained=True, check_repeats=2)
        out[key] = (gen, root / key)
    return out


@pytest.fixture(scope="session")
def shipped():
    from gs_onnx.registry import load

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
