"""The denoiser prior: exported from torch and run by ONNX Runtime to torch's numbers, at any image size; its folder
verified like a model folder (checksums, confined paths, the interface its manifest declares); the shipped one
denoises."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gs_onnx.errors import GSError
from gs_onnx.generator.denoiser import DEFAULT_DENOISER, available_denoisers, find_denoiser, load_denoiser


@pytest.fixture(scope="module")
def exported(tiny_denoiser):
    net, out = tiny_denoiser
    return net, out, load_denoiser(out).raw


def test_onnx_runtime_gives_torchs_numbers_at_any_size(exported):
    import torch

    from gs_onnx.engine.denoiser import Denoiser

    net, out, man = exported
    assert man["check"]["max_abs_diff"] < 1e-5
    d = Denoiser(load_denoiser(out), device="cpu")
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 64, 64), (3, 3, 32, 44), (2, 3, 30, 31)):  # 30 x 31: padded to 32 x 32, cropped back
        x = rng.random(shape, dtype=np.float32)
        s = np.linspace(0.01, 0.2, shape[0]).astype(np.float32)
        got = d(x, s)
        H, W = shape[2], shape[3]
        pad = ((0, 0), (0, 0), (0, (-H) % 4), (0, (-W) % 4))
        with torch.no_grad():
            ref = net(torch.from_numpy(np.pad(x, pad, mode="reflect")), torch.from_numpy(s).reshape(-1, 1, 1, 1))
        np.testing.assert_allclose(got, ref.numpy()[:, :, :H, :W], atol=1e-5)


def test_a_tampered_or_inconsistent_folder_is_refused(exported, tmp_path):
    _, out, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = bytearray((bad / "denoiser.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bad / "denoiser.onnx").write_bytes(bytes(data))
    with pytest.raises(GSError, match="checksum mismatch"):
        load_denoiser(bad)
    cases = {
        "format": lambda m: m.update(format="gs-onnx-manifest"),
        "escape": lambda m: (m["graph"].update(file="../x.onnx"), m.update(files={"../x.onnx": "0" * 64})),
        "extra file": lambda m: m["files"].update({"weights.bin": "0" * 64}),
        "inputs": lambda m: m["graph"].update(inputs=["x"]),
        "sigma": lambda m: m["sigma"].update(max=5),
    }
    for name, change in cases.items():
        shutil.rmtree(bad)
        shutil.copytree(out, bad)
        mf = json.loads((bad / "manifest.json").read_text())
        change(mf)
        (bad / "manifest.json").write_text(json.dumps(mf))
        with pytest.raises(GSError):
            load_denoiser(bad)
    with pytest.raises(GSError, match="unknown denoiser"):
        find_denoiser("no-such-denoiser")


def test_the_shipped_denoiser_denoises():
    from gs_onnx.engine.denoiser import Denoiser
    from gs_onnx.io.images import load_image
    from gs_onnx.metrics import psnr
    from importlib.resources import files

    assert DEFAULT_DENOISER in available_denoisers()
    d = Denoiser(find_denoiser(), device="cpu")
    x = load_image(files("gs_onnx") / "samples" / "celeba_aligned_00001.jpg", 128)
    noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    out = d(noisy[None], 0.05)[0]
    assert psnr(out, x) > psnr(noisy, x) + 5
