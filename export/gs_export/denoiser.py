"""The denoiser prior of ``gs-recover --method pnp``: a small noise-level-conditioned U-Net (DRUNet-like), trained
here on CelebA train faces and exported as one ONNX graph with a manifest, like the generators.

Architecture (``unet-s``): the image (3 channels) and a constant map of the noise level sigma (1 channel) in;
a 3x3 convolution to C channels; three scales (C, 2C, 4C channels, the last two reached by 2x2 strided
convolutions, left by 2x2 transposed convolutions, skips added), each with residual blocks of two 3x3
convolutions and a ReLU, no normalisation and no biases (as DRUNet, Zhang et al. 2021, so that the network stays
valid across noise levels); a 3x3 convolution to 3 channels: the estimated clean image. Height and width must be
multiples of 4.

Training (:func:`train`): 64 x 64 patches of the CelebA train faces (the 128 px aligned crops the 128 px models
see and the 64 px crops the 64 px models see), horizontal flips, Gaussian noise of a level drawn uniformly in
[0, :data:`SIGMA_MAX`] per patch (``--sigma-sampling mixed``: half of the patches instead log-uniformly in
[:data:`SIGMA_FLOOR`, :data:`SIGMA_MAX`], so that the low levels of PnP's last iterations are trained as often as
the high ones), L1 loss, Adam with a cosine decay over the steps or a time budget, whichever
ends first. Validation: PSNR on held-out test faces (the validation split, images 100-199 of the aligned test
folder) at a few noise levels, recorded in the manifest beside the torch/ONNX agreement.

``gs-train denoiser --data-128 DIR --data-64 DIR -o runs/denoiser`` trains;
``gs-export denoiser runs/denoiser -o models/denoiser`` writes ``denoiser.onnx`` and ``manifest.json``
(:mod:`gs_onnx.generator.denoiser` reads it, verifying every file).
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The largest noise level the denoiser is trained for (images in [0, 1]); PnP's schedules stay below it.
SIGMA_MAX = 0.2
#: Validation noise levels reported in the manifest.
VALIDATION_SIGMAS = (0.01, 0.02, 0.05, 0.1, 0.2)
ARCH = "unet-s"
#: The lowest level of the log-uniform half of ``mixed`` sampling.
SIGMA_FLOOR = 0.002
#: How the noise level of a training patch is drawn.
SIGMA_SAMPLINGS = ("uniform", "mixed")


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.b(F.relu(self.a(x)))


class SmallUNet(nn.Module):
    """x (B, 3, H, W) in [0, 1] and sigma (B, 1, 1, 1) -> the denoised image (B, 3, H, W); H, W multiples of 4."""

    def __init__(self, channels: int = 32, blocks: tuple[int, int, int] = (1, 1, 2)):
        super().__init__()
        c = channels
        self.config = {"channels": c, "blocks": list(blocks)}
        self.head = nn.Conv2d(4, c, 3, padding=1, bias=False)
        self.enc1 = nn.Sequential(*[ResBlock(c) for _ in range(blocks[0])])
        self.down1 = nn.Conv2d(c, 2 * c, 2, stride=2, bias=False)
        self.enc2 = nn.Sequential(*[ResBlock(2 * c) for _ in range(blocks[1])])
        self.down2 = nn.Conv2d(2 * c, 4 * c, 2, stride=2, bias=False)
        self.body = nn.Sequential(*[ResBlock(4 * c) for _ in range(blocks[2])])
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2, bias=False)
        self.dec2 = nn.Sequential(*[ResBlock(2 * c) for _ in range(blocks[1])])
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2, bias=False)
        self.dec1 = nn.Sequential(*[ResBlock(c) for _ in range(blocks[0])])
        self.tail = nn.Conv2d(c, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, x.shape[2], x.shape[3])
        h1 = self.enc1(self.head(torch.cat([x, s], dim=1)))
        h2 = self.enc2(self.down1(h1))
        h3 = self.body(self.down2(h2))
        d2 = self.dec2(self.up2(h3) + h2)
        d1 = self.dec1(self.up1(d2) + h1)
        return x + self.tail(d1)  # the image plus a correction: near identity where sigma is small


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------------------------- data

def load_faces(folder: str | Path, size: int, crop: str, limit: int | None = None) -> np.ndarray:
    """Faces of a folder as uint8 (N, 3, size, size), preprocessed as gs-measure does."""
    from .train import load_folder

    return load_folder(folder, size, crop, limit)


#: The sizes (pixels, after a centre crop to the largest square) at which ``--photos`` are laid out for patches.
PHOTO_SIZES = (128, 192, 256)


def load_photos(folder: str | Path, span: tuple[int, int | None], sizes=PHOTO_SIZES) -> list[np.ndarray]:
    """Images ``span[0]:span[1]`` of ``folder`` (sorted by name), each centre-cropped to its largest square and
    resized to every size of ``sizes``: uint8 (3, s, s) arrays, one per image and size."""
    from gs_onnx.io.images import list_images, load_uint8

    files = list_images(folder)[span[0]:span[1]]
    if not files:
        raise SystemExit(f"error: no images {span[0]}:{span[1] if span[1] is not None else ''} in {folder}")
    return [load_uint8(f, s, "center").transpose(2, 0, 1).copy() for f in files for s in sizes]


def parse_span(text: str) -> tuple[int, int | None]:
    """``"100:124"`` -> (100, 124); ``"100:"`` -> (100, None)."""
    a, sep, b = text.partition(":")
    try:
        start, stop = int(a or 0), (int(b) if b else None)
    except ValueError:
        raise SystemExit(f"error: a range is START:STOP (e.g. 100:124), not {text!r}") from None
    if not sep or start < 0 or (stop is not None and stop <= start):
        raise SystemExit(f"error: a range is START:STOP with 0 <= START < STOP, not {text!r}")
    return start, stop


class Patches:
    """Random 64 x 64 patches (float32 in [0, 1], flipped at random) from uint8 image stacks (faces, taken in turn),
    and from ``photos`` (uint8 (3, h, w) arrays of any size) for a share ``photo_share`` of the patches."""

    def __init__(self, stacks: list[np.ndarray], patch: int, seed: int, photos: list[np.ndarray] | None = None,
                 photo_share: float = 0.0):
        self.stacks = [torch.from_numpy(s) for s in stacks if len(s)]
        self.photos = [torch.from_numpy(p) for p in photos or []]
        self.photo_share = photo_share if self.photos else 0.0
        self.patch = patch
        self.gen = torch.Generator().manual_seed(seed)

    def next(self, batch: int) -> torch.Tensor:
        out = []
        n_photos = int(round(batch * self.photo_share))
        for j in range(batch):
            st = self.photos if j < n_photos else self.stacks[(j - n_photos) % len(self.stacks)]
            i = int(torch.randint(len(st), (1,), generator=self.gen))
            h, w = st[i].shape[-2], st[i].shape[-1]
            top = int(torch.randint(h - self.patch + 1, (1,), generator=self.gen))
            left = int(torch.randint(w - self.patch + 1, (1,), generator=self.gen))
            p = st[i][:, top:top + self.patch, left:left + self.patch]
            if torch.rand(1, generator=self.gen) < 0.5:
                p = p.flip(2)
            out.append(p)
        return torch.stack(out).float() / 255.0


def noisy(x: torch.Tensor, gen: torch.Generator, sigma_max: float = SIGMA_MAX,
          sampling: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with Gaussian noise of a level drawn per patch (see :data:`SIGMA_SAMPLINGS`), and the levels."""
    sigma = torch.rand(x.shape[0], 1, 1, 1, generator=gen) * sigma_max
    if sampling == "mixed":
        u = torch.rand(x.shape[0], 1, 1, 1, generator=gen)
        log = math.log(SIGMA_FLOOR) + u * (math.log(sigma_max) - math.log(SIGMA_FLOOR))
        half = torch.arange(x.shape[0]).view(-1, 1, 1, 1) % 2 == 1
        sigma = torch.where(half, log.exp(), sigma)
    elif sampling != "uniform":
        raise ValueError(f"unknown sigma sampling {sampling!r} (one of {', '.join(SIGMA_SAMPLINGS)})")
    return x + sigma * torch.randn(x.shape, generator=gen), sigma


# -------------------------------------------------------------------------------------- validation

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def validate(net: nn.Module, images: torch.Tensor, sigmas=VALIDATION_SIGMAS, seed: int = 1) -> dict[str, float]:
    """Mean PSNR (dB) of the denoised images per noise level (noise drawn from ``seed``), and of the noisy input."""
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for s in sigmas:
        y = images + s * torch.randn(images.shape, generator=gen)
        d = torch.cat([net(y[i:i + 16], torch.full((len(y[i:i + 16]), 1, 1, 1), s)) for i in range(0, len(y), 16)])
        out[f"{s:g}"] = round(float(np.mean([psnr(d[i], images[i]) for i in range(len(images))])), 3)
        out[f"{s:g}_noisy"] = round(float(np.mean([psnr(y[i], images[i]) for i in range(len(images))])), 3)
    net.train()
    return out


# ---------------------------------------------------------------------------------------- training

def train(data_128: str | None, data_64: str | None, out: str | Path, *, valid: str | None = None,
          steps: int = 20000, batch: int = 32, patch: int = 64, lr: float = 1e-3, time_budget: float = 0.0,
          channels: int = 32, seed: int = 0, threads: int = 0, limit: int | None = None,
          sigma_sampling: str = "uniform", photos: str | None = None, photos_range: str = "0:",
          photos_valid: str | None = None, photo_share: float = 0.25, init: str | None = None, log=print) -> dict:
    """Train the denoiser; writes ``OUT/denoiser.pt`` (state_dict and config), ``OUT/checkpoint.pt`` and
    ``OUT/train.json``. The learning rate decays (cosine) over ``steps`` or ``time_budget`` seconds, whichever
    ends first. A resumed run may change ``sigma_sampling``: each change starts a phase, recorded with its first
    step.

    ``photos`` (a folder, its images ``photos_range``, laid out by :func:`load_photos`) adds patches of other
    images for a share ``photo_share`` of each batch; ``photos_valid`` (a range of the same folder, disjoint from
    ``photos_range``) is validated beside the faces. ``init`` (a run folder or its ``denoiser.pt``) starts a new run
    from trained weights (fine-tuning; its sha256 is recorded)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stacks = []
    if data_128:
        stacks.append(load_faces(data_128, 128, "aligned", limit))
    if data_64:
        stacks.append(load_faces(data_64, 64, "center", limit))
    if not stacks:
        raise SystemExit("error: give --data-128 and/or --data-64")
    photo_arrays, photo_val, photo_info = None, None, None
    if photos:
        span = parse_span(photos_range)
        photo_arrays = load_photos(photos, span)
        photo_info = {"folder": photos, "range": photos_range, "sizes": list(PHOTO_SIZES), "share": photo_share,
                      "images": len(photo_arrays) // len(PHOTO_SIZES)}
        if photos_valid:
            vspan = parse_span(photos_valid)
            if vspan[0] < (span[1] if span[1] is not None else float("inf")) and \
                    span[0] < (vspan[1] if vspan[1] is not None else float("inf")):
                raise SystemExit(f"error: the validation photos {photos_valid} overlap the training photos "
                                 f"{photos_range}")
            photo_val = torch.from_numpy(np.stack(load_photos(photos, vspan, sizes=(128,)))).float() / 255.0
            photo_info["valid_range"] = photos_valid
    val = None
    if valid:
        from gs_onnx.io.images import list_images

        files = list_images(valid)[100:132]  # the validation split (images 100-199), its first 32
        val = torch.from_numpy(np.stack([_one(f) for f in files])).float() / 255.0
    net = SmallUNet(channels)
    init_info = None
    if init:
        import hashlib

        if (Path(init) / "manifest.json").exists():  # an exported denoiser folder (e.g. the shipped one)
            net, init_info = from_exported(init)
        else:
            src = Path(init) / "denoiser.pt" if Path(init).is_dir() else Path(init)
            state = torch.load(src, weights_only=True)
            net = SmallUNet(int(state["config"]["channels"]), tuple(state["config"]["blocks"]))
            net.load_state_dict(state["state_dict"])
            init_info = {"file": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    ck = out / "checkpoint.pt"
    step, spent, log_rows, phases = 0, 0.0, [], []
    if ck.exists():
        state = torch.load(ck, weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step, spent, log_rows = int(state["step"]), float(state["spent"]), json.loads(state["log"])
        phases = json.loads(state.get("phases", '[{"from_step": 0, "sigma_sampling": "uniform"}]'))
        log(f"resumed at step {step} ({spent:.0f} s)")
    if not phases or phases[-1]["sigma_sampling"] != sigma_sampling:
        phases.append({"from_step": step, "sigma_sampling": sigma_sampling})
    patches = Patches(stacks, patch, seed + step, photo_arrays, photo_share)
    gen = torch.Generator().manual_seed(seed + 10_000 + step)
    t0 = time.time() - spent
    running = []
    while step < steps:
        progress = max(step / steps, (time.time() - t0) / time_budget if time_budget else 0.0)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = 1e-6 + 0.5 * (lr - 1e-6) * (1 + math.cos(math.pi * progress))
        x = patches.next(batch)
        y, sigma = noisy(x, gen, sampling=sigma_sampling)
        loss = F.l1_loss(net(y, sigma), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running.append(float(loss.detach()))
        if step % 200 == 0 or step == steps:
            row = {"step": step, "seconds": round(time.time() - t0, 1), "l1": round(float(np.mean(running)), 5),
                   "lr": opt.param_groups[0]["lr"]}
            running = []
            if val is not None and step % 1000 == 0:
                row["val_psnr"] = validate(net, val, sigmas=(0.01, 0.05, 0.1))
            if photo_val is not None and step % 1000 == 0:
                row["val_photos_psnr"] = validate(net, photo_val, sigmas=(0.005, 0.01, 0.05))
            log_rows.append(row)
            log(json.dumps(row))
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "spent": time.time() - t0,
                        "log": json.dumps(log_rows), "phases": json.dumps(phases)}, ck)
    info = {"architecture": ARCH, "config": net.config, "parameters": parameters(net), "steps": step,
            "batch": batch, "patch": patch, "lr": lr, "sigma_max": SIGMA_MAX, "phases": phases, "loss": "l1",
            "seed": seed,
            "seconds": round(time.time() - t0, 1), "hardware": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}",
            "data": {"128": data_128, "64": data_64, "images": [len(s) for s in stacks], "photos": photo_info},
            "init": init_info, "log": log_rows}
    if val is not None:
        info["validation"] = validate(net, val)
    if photo_val is not None:
        info["validation_photos"] = validate(net, photo_val)
    torch.save({"state_dict": net.state_dict(), "config": net.config}, out / "denoiser.pt")
    (out / "train.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _one(path) -> np.ndarray:
    from gs_onnx.io.images import load_uint8

    return load_uint8(path, 128, "aligned").transpose(2, 0, 1).copy()


def load_trained(run: str | Path) -> SmallUNet:
    """The trained network of a run folder (``denoiser.pt``; a run still training: its ``checkpoint.pt``)."""
    run = Path(run)
    if (run / "denoiser.pt").exists():
        state = torch.load(run / "denoiser.pt", weights_only=True)
        net = SmallUNet(int(state["config"]["channels"]), tuple(state["config"]["blocks"]))
        net.load_state_dict(state["state_dict"])
    else:
        state = torch.load(run / "checkpoint.pt", weights_only=True)["net"]
        net = SmallUNet(int(state["head.weight"].shape[0]))
        net.load_state_dict(state)
    return net.eval()


def from_exported(folder: str | Path) -> tuple[SmallUNet, dict]:
    """The torch network of an exported denoiser folder (``manifest.json`` and ``denoiser.onnx``, every file verified
    by :func:`gs_onnx.generator.denoiser.load_denoiser`): the graph's initializers, by name, into a
    :class:`SmallUNet` of the manifest's configuration (strict: every weight present, no other), refused unless
    torch and ONNX Runtime then give the same images. Returns (network, the ``init`` record: file and sha256)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from gs_onnx.errors import GSError
    from gs_onnx.generator.denoiser import INPUTS, OUTPUTS, load_denoiser

    try:
        man = load_denoiser(folder)
    except GSError as e:
        raise SystemExit(f"error: {e}") from None
    if man.architecture != ARCH:
        raise SystemExit(f"error: {folder}: architecture {man.architecture!r} is not {ARCH!r}")
    cfg = man.raw["architecture"]["config"]
    net = SmallUNet(int(cfg["channels"]), tuple(int(b) for b in cfg["blocks"]))
    path = man.root / man.graph
    model = onnx.load(str(path))
    names = set(net.state_dict())
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer
               if i.name in names}
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise SystemExit(f"error: {path} does not hold the weights of {ARCH} {cfg}: {str(e).splitlines()[0]}") from None
    net.eval()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    x, sigma = torch.rand(2, 3, 64, 64, generator=gen), torch.tensor([0.02, 0.1]).reshape(2, 1, 1, 1)
    with torch.no_grad():
        ref = net(x, sigma).numpy()
    got = sess.run(list(OUTPUTS), dict(zip(INPUTS, (x.numpy(), sigma.numpy()))))[0]
    if float(np.abs(got - ref).max()) > 1e-4:
        raise SystemExit(f"error: {path}: the rebuilt network differs from the graph by {np.abs(got - ref).max():.2e}")
    return net, {"file": str(path), "sha256": man.raw["files"][man.graph]}


def _interrupted(run: Path) -> dict:
    """What a run that stopped before writing ``train.json`` says about itself: its checkpoint's step, seconds
    and last validation (the training settings are not in the checkpoint and stay out of the manifest)."""
    if not (run / "checkpoint.pt").exists():
        return {}
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    rows = json.loads(state["log"])
    vals = [r for r in rows if "val_psnr" in r]
    info = {"steps": int(state["step"]), "seconds": round(float(state["spent"]), 1),
            "stopped": "interrupted: exported from the last checkpoint"}
    if vals:
        info["validation"] = {"step": vals[-1]["step"], "psnr": vals[-1]["val_psnr"]}
    return info


# ------------------------------------------------------------------------------------------- export

#: Inputs on which the exported graph is checked against torch: (batch, height, width).
CHECK_SHAPES = ((1, 64, 64), (3, 128, 128), (2, 32, 48))


def export(run: str | Path, out: str | Path, name: str = "unet-celeba", provenance: dict | None = None,
           overwrite: bool = False) -> dict:
    """Write ``OUT/denoiser.onnx`` (weights inside, dynamic batch, height and width) and ``OUT/manifest.json`` for the
    trained run ``run``: checked against torch on :data:`CHECK_SHAPES` at several noise levels (the largest
    difference recorded), the training's settings and validation copied from ``run/train.json``."""
    import hashlib
    import tempfile

    import onnx
    import onnxruntime as ort

    from gs_onnx.generator.denoiser import FORMAT, FORMAT_VERSION, INPUTS, OUTPUTS

    run, out = Path(run), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SystemExit(f"error: {out} exists and is not empty (--overwrite replaces it)")
    net = load_trained(run)
    info = json.loads((run / "train.json").read_text()) if (run / "train.json").exists() else _interrupted(run)
    x = torch.rand(2, 3, 64, 64)
    sigma = torch.full((2, 1, 1, 1), 0.05)
    batch, h, w = torch.export.Dim("batch", max=1024), torch.export.Dim("h", max=512), torch.export.Dim("w", max=512)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "denoiser.onnx"
        prog = torch.onnx.export(net, (x, sigma), dynamo=True, input_names=list(INPUTS), output_names=list(OUTPUTS),
                                 dynamic_shapes={"x": {0: batch, 2: 4 * h, 3: 4 * w}, "sigma": {0: batch}},
                                 opset_version=18)
        prog.save(str(path), external_data=False)
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        data = model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for (b, hh, ww) in CHECK_SHAPES:
        for s in (0.0, 0.02, 0.1, SIGMA_MAX):
            xi = torch.rand(b, 3, hh, ww, generator=gen)
            si = torch.full((b, 1, 1, 1), s)
            with torch.no_grad():
                ref = net(xi, si).numpy()
            got = sess.run(list(OUTPUTS), {"x": xi.numpy(), "sigma": si.numpy()})[0]
            worst = max(worst, float(np.abs(got - ref).max()))
    if worst > 1e-4:
        raise SystemExit(f"error: the exported denoiser differs from torch by {worst:.2e}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "denoiser.onnx").write_bytes(data)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
        "architecture": {"name": ARCH, "config": net.config, "parameters": parameters(net)},
        "graph": {"file": "denoiser.onnx", "inputs": list(INPUTS), "outputs": list(OUTPUTS)},
        "image": {"channels": 3, "range": [0.0, 1.0], "multiple_of": 4},
        "sigma": {"min": 0.0, "max": SIGMA_MAX, "meaning": "standard deviation of Gaussian noise on [0, 1] images"},
        "opset": 18,
        "files": {"denoiser.onnx": hashlib.sha256(data).hexdigest()},
        "check": {"against": "torch", "shapes": [list(c) for c in CHECK_SHAPES], "max_abs_diff": worst},
        "training": {k: info.get(k) for k in ("steps", "batch", "patch", "lr", "loss", "sigma_max", "phases", "seconds",
                                              "hardware", "data", "seed", "stopped", "init") if k in info},
        "validation": info.get("validation"),
        "provenance": provenance or _provenance(info),
    }
    if info.get("validation_photos"):
        manifest["validation_photos"] = info["validation_photos"]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _provenance(info: dict) -> dict:
    photos = (info.get("data") or {}).get("photos")
    data = ("CelebA (Liu et al., ICCV 2015) train faces: 5,000 aligned faces cropped to 128 px and 20,000 64 px "
            "crops of the official train partition")
    licence = "the weights inherit CelebA's terms: non-commercial research purposes only"
    if photos:
        data += (f"; {photos['images']} photos ({photos['folder']}, images {photos['range']}: COCO 2017 train images "
                 f"outside the toolkit's test split, each under its own Flickr Creative Commons licence) for "
                 f"{photos['share']:.0%} of the patches")
        licence += "; the photos' own Creative Commons terms (COCO terms of use)"
    weights = "trained by gs-onnx: gs-train denoiser (gs_export.denoiser), " + (
        f"fine-tuned from {info['init']['file']} (sha256 {info['init']['sha256'][:12]})" if info.get("init")
        else "from random initialisation")
    return {"weights": weights, "training_data": data, "licence": licence}


# ------------------------------------------------------------------------------------------ command

def _command():
    import click

    from gs_onnx.cli.common import OneLineCommand, examples, version_option

    @click.command(cls=OneLineCommand, epilog=examples(
        "gs-train denoiser --data-128 ../shared/data/celeba_aligned/train --data-64 ../shared/data/celeba_crops64/train "
        "--valid ../shared/data/celeba_aligned/test -o runs/denoiser --time-budget 14400",
        "gs-export denoiser runs/denoiser -o models/denoiser"))
    @click.option("--data-128", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Folder of CelebA aligned faces (cropped to 128 px as the 128 px models see them).")
    @click.option("--data-64", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Folder of 64 px face crops.")
    @click.option("--valid", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Folder of held-out aligned faces: its images 100-131 are validated (PSNR per noise level).")
    @click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Run folder.")
    @click.option("--steps", type=int, default=20000, show_default=True)
    @click.option("--batch", type=int, default=32, show_default=True)
    @click.option("--lr", type=float, default=1e-3, show_default=True)
    @click.option("--channels", type=int, default=32, show_default=True)
    @click.option("--time-budget", type=float, default=0.0, show_default=True,
                  help="Seconds; the schedule decays over the steps or this, whichever ends first (0: none).")
    @click.option("--threads", type=int, default=0, show_default=True, help="torch threads (0: torch's default).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--sigma-sampling", type=click.Choice(SIGMA_SAMPLINGS), default="uniform", show_default=True,
                  help="How each patch's noise level is drawn: uniform in [0, 0.2], or mixed (half log-uniform "
                       "from 0.002, for PnP's low levels).")
    @click.option("--photos", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Folder of other photos (e.g. COCO) whose patches join the faces' (centre square at "
                       "128, 192 and 256 px).")
    @click.option("--photos-range", default="0:", show_default=True,
                  help="Which of --photos' images (sorted by name) to train on, START:STOP.")
    @click.option("--photos-valid", default=None, help="A range of --photos' images, disjoint from --photos-range, "
                                                       "validated beside the faces.")
    @click.option("--photo-share", type=click.FloatRange(0.0, 1.0), default=0.25, show_default=True,
                  help="Share of each batch's patches taken from --photos.")
    @click.option("--init", type=click.Path(exists=True), default=None,
                  help="Start from a trained denoiser: a run folder, its denoiser.pt, or an exported denoiser folder (e.g. "
                       "models/priors/unet-celeba, its weights read from the verified graph): fine-tuning.")
    @version_option
    def main(data_128, data_64, valid, out, steps, batch, lr, channels, time_budget, threads, seed, sigma_sampling,
             photos, photos_range, photos_valid, photo_share, init):
        """Train the noise-level-conditioned denoiser of --method pnp on face crops (resumes from OUT/checkpoint.pt)."""
        info = train(data_128, data_64, out, valid=valid, steps=steps, batch=batch, lr=lr, time_budget=time_budget,
                     channels=channels, seed=seed, threads=threads, sigma_sampling=sigma_sampling, photos=photos,
                     photos_range=photos_range, photos_valid=photos_valid, photo_share=photo_share, init=init,
                     log=lambda s: click.echo(s, err=True))
        click.echo(f"trained {info['steps']} steps in {info['seconds']:.0f} s; validation {info.get('validation')}")

    return main


def main(args=None):
    return _command()(args=args)
