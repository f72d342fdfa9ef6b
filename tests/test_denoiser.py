"""The denoiser prior: exported from torch and run by ONNX Runtime to torch's numbers, at any image size; its folder
verified like a model folder (checksums, confined paths, the interface its manifest declares); the shipped one
denoises."""
from __future__ import annotations

import hashlib
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


def test_mixed_sampling_trains_the_low_noise_levels_and_a_resumed_run_records_its_phases(tmp_path):
    """``--sigma-sampling mixed`` draws half of the levels log-uniformly (about a fifth of all below 0.01, against
    5 % uniformly); a run resumed with another sampling records where each phase began, and its step count and
    exported weights follow the checkpoint."""
    torch = pytest.importorskip("torch")
    from conftest import SAMPLES
    from gs_export.denoiser import SIGMA_FLOOR, SIGMA_MAX, noisy, train

    g = torch.Generator().manual_seed(0)
    _, s_uni = noisy(torch.zeros(4000, 1, 1, 1), g)
    _, s_mix = noisy(torch.zeros(4000, 1, 1, 1), g, sampling="mixed")
    low = lambda s: float((s < 0.01).float().mean())  # noqa: E731
    assert 0.03 < low(s_uni) < 0.07 and 0.15 < low(s_mix) < 0.25
    assert SIGMA_FLOOR <= float(s_mix[1::2].min()) and float(s_mix.max()) <= SIGMA_MAX  # odd rows: the log half
    with pytest.raises(ValueError, match="unknown sigma sampling"):
        noisy(torch.zeros(2, 1, 1, 1), g, sampling="loguniform")

    faces = tmp_path / "faces"
    faces.mkdir()
    for p in SAMPLES.glob("celeba64_*.jpg"):
        shutil.copy(p, faces / p.name)
    run = tmp_path / "run"
    kw = dict(batch=2, patch=32, channels=4, threads=1, log=lambda s: None)
    train(None, str(faces), run, steps=3, **kw)
    info = train(None, str(faces), run, steps=5, sigma_sampling="mixed", **kw)
    assert info["steps"] == 5
    assert info["phases"] == [{"from_step": 0, "sigma_sampling": "uniform"},
                              {"from_step": 3, "sigma_sampling": "mixed"}]
    assert json.loads((run / "train.json").read_text())["phases"] == info["phases"]


def test_a_fine_tune_on_faces_and_photos_starts_from_the_weights_and_records_where_its_data_came_from(tmp_path):
    """``--init`` starts from a trained run's weights (its sha256 recorded), ``--photos`` adds patches of other
    images for a share of each batch (laid out at every size of PHOTO_SIZES), validated on a disjoint range; the
    manifest's provenance names the photos and their licence. Overlapping or malformed ranges are refused."""
    torch = pytest.importorskip("torch")
    from conftest import SAMPLES
    from gs_export.denoiser import PHOTO_SIZES, Patches, export, load_photos, load_trained, parse_span, train

    faces = tmp_path / "faces"
    faces.mkdir()
    for p in SAMPLES.glob("celeba64_*.jpg"):
        shutil.copy(p, faces / p.name)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, p in enumerate(sorted(SAMPLES.glob("*.jpg"))[:4]):
        shutil.copy(p, photos / f"{i:02d}.jpg")
    laid = load_photos(photos, (0, 2))
    assert len(laid) == 2 * len(PHOTO_SIZES) and sorted({a.shape[1] for a in laid}) == sorted(PHOTO_SIZES)
    # a share of 0.5: the first half of each batch from the photos (a flat photo stands out from the faces)
    flat = [np.full((3, 128, 128), 7, np.uint8)]
    batch = Patches([np.zeros((2, 3, 64, 64), np.uint8)], 32, 0, flat, 0.5).next(8)
    assert torch.allclose(batch[:4], torch.tensor(7 / 255)) and float(batch[4:].abs().max()) == 0.0

    kw = dict(batch=2, patch=32, channels=4, threads=1, log=lambda s: None)
    train(None, str(faces), tmp_path / "base", steps=2, **kw)
    info = train(None, str(faces), tmp_path / "ft", steps=2, photos=str(photos), photos_range="0:3",
                 photos_valid="3:4", init=str(tmp_path / "base"), **kw)
    assert info["init"]["sha256"] == hashlib.sha256((tmp_path / "base" / "denoiser.pt").read_bytes()).hexdigest()
    assert info["data"]["photos"]["images"] == 3 and "0.01" in info["validation_photos"]
    man = export(tmp_path / "ft", tmp_path / "out")
    assert "3 photos" in man["provenance"]["training_data"] and "fine-tuned from" in man["provenance"]["weights"]
    assert man["training"]["init"] == info["init"] and man["validation_photos"] == info["validation_photos"]
    assert load_trained(tmp_path / "ft").config == load_trained(tmp_path / "base").config
    with pytest.raises(SystemExit, match="overlap"):
        train(None, str(faces), tmp_path / "bad", steps=1, photos=str(photos), photos_range="0:3", photos_valid="2:4",
              **kw)
    for bad in ("3", "a:b", "4:2"):
        with pytest.raises(SystemExit, match="range"):
            parse_span(bad)


def test_a_fine_tune_can_start_from_an_exported_denoiser_folder(tmp_path):
    """``--init FOLDER`` with an exported denoiser (what ships in models/priors): the graph's weights, verified by
    the manifest's sha256, rebuilt into the torch network exactly; a tampered graph is refused."""
    torch = pytest.importorskip("torch")
    from conftest import SAMPLES
    from gs_export.denoiser import export, from_exported, load_trained, train

    faces = tmp_path / "faces"
    faces.mkdir()
    for p in SAMPLES.glob("celeba64_*.jpg"):
        shutil.copy(p, faces / p.name)
    kw = dict(batch=2, patch=32, channels=4, threads=1, log=lambda s: None)
    train(None, str(faces), tmp_path / "base", steps=2, **kw)
    export(tmp_path / "base", tmp_path / "exported")
    net, rec = from_exported(tmp_path / "exported")
    trained = load_trained(tmp_path / "base").state_dict()
    assert set(net.state_dict()) == set(trained)
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    assert rec["sha256"] == hashlib.sha256((tmp_path / "exported" / "denoiser.onnx").read_bytes()).hexdigest()
    info = train(None, str(faces), tmp_path / "ft", steps=1, init=str(tmp_path / "exported"), **kw)
    assert info["init"] == rec
    g = tmp_path / "exported" / "denoiser.onnx"
    g.write_bytes(g.read_bytes()[:-1] + bytes([g.read_bytes()[-1] ^ 1]))
    with pytest.raises(SystemExit, match="checksum"):
        from_exported(tmp_path / "exported")
