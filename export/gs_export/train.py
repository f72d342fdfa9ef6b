"""Training of the paper's generators (DCGAN 64 px, BEGAN 128 px with skips, VAE 128 px) on an image folder.

``gs-train dcgan --data DIR --out RUN`` (and ``began``, ``vae``) trains with the paper's settings as
defaults, writes ``RUN/checkpoint.pt`` (everything needed to resume: state_dicts, optimiser states,
step, RNG-free counters), ``RUN/generator.pt`` (the generator's state_dict alone, what ``gs-export``
reads), ``RUN/samples_<step>.png`` grids and ``RUN/train.json`` (settings, losses, time, hardware).

Runs are bounded by ``--epochs`` and, optionally, ``--time-budget`` seconds: the learning-rate schedule
follows progress = max(step / total_steps, elapsed / budget), so a budgeted run still decays fully. Without
a budget a run is deterministic for a given seed on a given device.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from gs_onnx.cli.common import OneLineCommand, examples, version_option
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from gs_onnx.io.images import grid, list_images, load_uint8, save_png
from gs_onnx.io.progress import Progress

from .architectures import BEGAN, DCGAN, VAEDecoder, VAEEncoder

DEFAULTS = {
    # arch: image size, crop, batch, epochs, lr
    "dcgan": dict(size=64, crop="center", batch=128, epochs=25, lr=2e-4),
    "began": dict(size=128, crop="aligned", batch=16, epochs=40, lr=1e-4),
    "vae": dict(size=128, crop="aligned", batch=64, epochs=60, lr=2e-4),
}


# --------------------------------------------------------------------------------------------- data

def load_folder(folder: str | Path, size: int, crop: str, limit: int | None = None) -> np.ndarray:
    """All images of ``folder`` (sorted by name, the first ``limit``) as uint8 (N, 3, size, size)."""
    files = list_images(folder)[:limit]
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 2)) as ex:
        arr = list(ex.map(lambda p: load_uint8(p, size, crop), files))
    return np.stack(arr).transpose(0, 3, 1, 2).copy()


class Batches:
    """Shuffled mini-batches from a uint8 tensor held on the device; float32 in [0, 1] out,
    with random horizontal flips when ``flip``."""

    def __init__(self, data: torch.Tensor, batch: int, gen: torch.Generator, flip: bool):
        self.data, self.batch, self.gen, self.flip = data, batch, gen, flip
        self.per_epoch = max(1, len(data) // batch)
        self._perm: torch.Tensor | None = None
        self._i = 0

    def next(self) -> torch.Tensor:
        if self._perm is None or self._i >= self.per_epoch:
            self._perm = torch.randperm(len(self.data), generator=self.gen).to(self.data.device)
            self._i = 0
        idx = self._perm[self._i * self.batch:(self._i + 1) * self.batch]
        self._i += 1
        x = self.data[idx].float() / 255.0
        if self.flip:
            m = (torch.rand(len(x), generator=self.gen) < 0.5).to(x.device)
            x = torch.where(m[:, None, None, None], x.flip(3), x)
        return x


# ------------------------------------------------------------------------------------- the models

class DCGANDiscriminator(nn.Module):
    """The DCGAN tutorial discriminator (64 px), logits out (BCE with logits)."""

    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))

    def forward(self, x):
        return self.main(x).flatten()


def dcgan_init(m: nn.Module) -> None:
    """N(0, 0.02) conv weights, N(1, 0.02) BatchNorm scales, zero biases (Radford et al.)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class BEGANDiscriminator(nn.Module):
    """BEGAN's autoencoder discriminator: conv encoder to an ``nz`` code, a BEGAN decoder back."""

    def __init__(self, nz: int = 64, ch: int = 64, image_size: int = 128, nc: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(nc, ch, 3, 1, 1), nn.ELU()]
        c, size, lvl = ch, image_size, 1
        while size > 8:
            nxt = ch * (lvl + 1)
            layers += [nn.Conv2d(c, c, 3, 1, 1), nn.ELU(), nn.Conv2d(c, nxt, 3, 2, 1), nn.ELU()]
            c, size, lvl = nxt, size // 2, lvl + 1
        layers += [nn.Conv2d(c, c, 3, 1, 1), nn.ELU(), nn.Conv2d(c, c, 3, 1, 1), nn.ELU()]
        self.enc = nn.Sequential(*layers)
        self.fc = nn.Linear(c * 8 * 8, nz)
        self.dec = BEGAN(nz=nz, ch=ch, image_size=image_size, skip=True, nc=nc)

    def forward(self, x):
        return self.dec(self.fc(self.enc(x).flatten(1)))


# ----------------------------------------------------------------------------------------- helpers

def _cosine(lr0: float, progress: float) -> float:
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def _to_image01(x: torch.Tensor, arch: str) -> torch.Tensor:
    return (x + 1) / 2 if arch == "dcgan" else x


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} (torch {torch.__version__})"


@torch.no_grad()
def recalibrate_bn(g: nn.Module, arch: str, device, n_batches: int = 50, batch: int = 256, seed: int = 0):
    """Replace BatchNorm running statistics by exact averages over ``n_batches`` prior samples
    (momentum=None), so that eval-mode outputs match the train-mode generator."""
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g.train()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(n_batches):
        g(g.sample_latent(batch, generator=gen).to(device))
    for m in bns:
        m.momentum = 0.1
    g.eval()


# ------------------------------------------------------------------------------------------- train

def train(arch: str, data: str | Path, out: str | Path, *, device: str = "auto", epochs: int | None = None,
          batch: int | None = None, lr: float | None = None, time_budget: float = 0.0, seed: int = 0,
          amp: str = "auto", limit: int | None = None, max_steps: int | None = None,
          sample_every: float = 120.0, config: dict | None = None, resume: bool = True,
          d_ch: int = 64, bn_batches: int = 50) -> dict:
    """Train ``arch`` on the images of ``data``; return the training record (also ``out/train.json``).

    Parameters
    ----------
    arch : "dcgan" | "began" | "vae"
    data : folder of images (preprocessed with the arch's default crop and size)
    out : run folder (created); an existing ``checkpoint.pt`` there is resumed when ``resume``
    epochs, batch, lr : override the paper's defaults (:data:`DEFAULTS`)
    time_budget : seconds of training (0: none); the schedule decays over whichever ends first
    amp : "bf16", "none" or "auto" (bf16 autocast on CUDA for BEGAN and VAE)
    limit : use only the first ``limit`` images; max_steps : hard cap on optimiser steps (smoke runs)
    config : architecture keywords (e.g. ``{"ch": 64}`` for BEGAN)
    d_ch : BEGAN discriminator width; bn_batches : prior batches for the final BatchNorm recalibration
    """
    t_start = time.time()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    d = DEFAULTS[arch]
    epochs = epochs or d["epochs"]
    batch = batch or d["batch"]
    lr = lr or d["lr"]
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    use_amp = (amp == "bf16") or (amp == "auto" and dev.type == "cuda" and arch != "dcgan")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)

    arr = load_folder(data, d["size"], d["crop"], limit)
    images = torch.from_numpy(arr).to(dev)
    batch = min(batch, len(images))
    loader = Batches(images, batch, gen, flip=(arch != "dcgan"))
    total_steps = epochs * loader.per_epoch
    if max_steps:
        total_steps = min(total_steps, max_steps)
    config = dict(config or {})

    if arch == "dcgan":
        G = DCGAN(**config).to(dev)
        D = DCGANDiscriminator().to(dev)
        G.apply(dcgan_init)
        D.apply(dcgan_init)
        opts = [torch.optim.Adam(G.parameters(), lr, betas=(0.5, 0.999)),
                torch.optim.Adam(D.parameters(), lr, betas=(0.5, 0.999))]
        nets = {"G": G, "D": D}
    elif arch == "began":
        G = BEGAN(**config).to(dev)
        D = BEGANDiscriminator(nz=G.nz, ch=d_ch, image_size=G.image_size).to(dev)
        opts = [torch.optim.Adam(G.parameters(), lr, betas=(0.5, 0.999)),
                torch.optim.Adam(D.parameters(), lr, betas=(0.5, 0.999))]
        nets = {"G": G, "D": D}
    elif arch == "vae":
        G = VAEDecoder(**config).to(dev)
        E = VAEEncoder(nz=G.nz, image_size=G.image_size).to(dev)
        opts = [torch.optim.AdamW(list(G.parameters()) + list(E.parameters()), lr)]
        nets = {"G": G, "E": E}
    else:
        raise click.UsageError(f"unknown architecture {arch}")

    state = {"step": 0, "k": 0.0, "elapsed": 0.0, "losses": []}
    ck = out / "checkpoint.pt"
    if resume and ck.exists():
        saved = torch.load(ck, map_location=dev, weights_only=True)
        for name, net in nets.items():
            net.load_state_dict(saved["nets"][name])
        for o, s in zip(opts, saved["opts"]):
            o.load_state_dict(s)
        state.update(saved["state"])
        gen.manual_seed(seed + int(state["step"]))

    fixed = G.sample_latent(64, generator=torch.Generator().manual_seed(1234)).to(dev)
    bce = nn.BCEWithLogitsLoss()
    gamma, lambda_k = 0.5, 0.001
    ac = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if use_amp else \
        (lambda: torch.autocast(dev.type, enabled=False))
    prog = Progress(f"train {arch}", enabled=True)
    t0 = time.time() - state["elapsed"]
    last_sample = time.time()
    last_ckpt = time.time()
    window: list[list[float]] = []

    def progress() -> float:
        p = state["step"] / total_steps
        if time_budget > 0:
            p = max(p, (time.time() - t0) / time_budget)
        return p

    def save(final: bool = False) -> None:
        state["elapsed"] = time.time() - t0
        tmp = out / "checkpoint.pt.tmp"
        torch.save({"nets": {k: v.state_dict() for k, v in nets.items()},
                    "opts": [o.state_dict() for o in opts], "state": state, "arch": arch,
                    "config": G.config()}, tmp)
        os.replace(tmp, ck)

    def samples(tag: str) -> None:
        G.eval()
        with torch.no_grad():
            x = _to_image01(G(fixed).float(), arch).clamp(0, 1).cpu().numpy()
        G.train()
        save_png(grid(list(x), 8), out / f"samples_{tag}.png")

    while progress() < 1.0:
        p = progress()
        if arch == "began":
            for o in opts:
                _set_lr(o, _cosine(lr, p))
        x = loader.next()
        n = len(x)
        if arch == "dcgan":
            z = G.sample_latent(n, generator=gen).to(dev)
            fake = G(z)
            opts[1].zero_grad(set_to_none=True)
            ones, zeros = torch.ones(n, device=dev), torch.zeros(n, device=dev)
            loss_d = bce(D(x * 2 - 1), ones) + bce(D(fake.detach()), zeros)
            loss_d.backward()
            opts[1].step()
            opts[0].zero_grad(set_to_none=True)
            loss_g = bce(D(fake), ones)
            loss_g.backward()
            opts[0].step()
            rec = [loss_d.item(), loss_g.item()] if state["step"] % 25 == 0 else None
        elif arch == "began":
            z = G.sample_latent(n, generator=gen).to(dev)
            with ac():
                fake = G(z)
                l_real = (D(x) - x).abs().mean()
                l_fake_d = (D(fake.detach()) - fake.detach()).abs().mean()
                loss_d = l_real - state["k"] * l_fake_d
            opts[1].zero_grad(set_to_none=True)
            loss_d.float().backward()
            opts[1].step()
            with ac():
                l_fake = (D(fake) - fake).abs().mean()
            opts[0].zero_grad(set_to_none=True)
            l_fake.float().backward()
            opts[0].step()
            lr_, lf_ = l_real.item(), l_fake.item()
            state["k"] = float(min(1.0, max(0.0, state["k"] + lambda_k * (gamma * lr_ - lf_))))
            conv = lr_ + abs(gamma * lr_ - lf_)
            rec = [lr_, lf_, state["k"], conv] if state["step"] % 25 == 0 else None
        else:
            with ac():
                mu, logvar = E(x)
                zz = mu + torch.randn(mu.shape, generator=gen).to(dev) * (0.5 * logvar).exp()
                xr = G(zz)
            rec_l = ((xr.float() - x) ** 2).sum(dim=(1, 2, 3)).mean()
            kl = (-0.5 * (1 + logvar.float() - mu.float() ** 2 - logvar.float().exp()).sum(1)).mean()
            loss = rec_l + kl
            opts[0].zero_grad(set_to_none=True)
            loss.backward()
            opts[0].step()
            rec = [rec_l.item(), kl.item()] if state["step"] % 25 == 0 else None
        state["step"] += 1
        if rec is not None:
            window.append(rec)
            state["losses"].append([state["step"], round(time.time() - t0, 2)] + [round(v, 5) for v in rec])
            names = {"dcgan": "D G", "began": "Lreal Lfake k M", "vae": "rec kl"}[arch].split()
            prog.update(progress(), f"step {state['step']} " + " ".join(
                f"{a}={b:.4g}" for a, b in zip(names, rec)))
        if time.time() - last_sample > sample_every:
            samples(f"{state['step']:06d}")
            last_sample = time.time()
        if time.time() - last_ckpt > 60:
            save()
            last_ckpt = time.time()
    prog.close()

    if arch in ("dcgan", "vae"):
        # DCGAN: population statistics of the prior's activations. VAE: keep the running statistics of the
        # posterior codes for the encoder-fed decoder but recalibrate on prior samples, the way GS uses it.
        recalibrate_bn(G, arch, dev, n_batches=bn_batches)
    G.eval()
    save()
    samples("final")
    torch.save({k: v.detach().float().cpu() for k, v in G.state_dict().items()}, out / "generator.pt")
    record = {
        "arch": arch, "config": G.config(), "data": "/".join(Path(data).resolve().parts[-2:]),  # no local path
        "images": int(len(images)),
        "image_size": d["size"], "crop": d["crop"], "batch": batch, "lr": lr, "epochs_planned": epochs,
        "steps": state["step"], "epochs_done": round(state["step"] / loader.per_epoch, 2),
        "time_budget_s": time_budget, "train_seconds": round(time.time() - t0, 1),
        "wall_seconds": round(time.time() - t_start, 1), "seed": seed, "amp": "bf16" if use_amp else "fp32",
        "device": hardware(dev), "optimizer": "Adam(0.5,0.999)" if arch != "vae" else "AdamW",
        "schedule": "cosine (BEGAN), constant otherwise", "loss_columns":
            {"dcgan": "step,sec,lossD,lossG", "began": "step,sec,Lreal,Lfake,k,M",
             "vae": "step,sec,recon_sse,kl"}[arch],
        "losses": state["losses"],
    }
    (out / "train.json").write_text(json.dumps(record, indent=1))
    return record


def _one_line(fn):
    from .cli import one_line

    return one_line(fn)


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-train dcgan --data ../shared/data/celeba_crops64/train -o runs/dcgan",
    "gs-train began --data ../shared/data/celeba_aligned/train -o runs/began --time-budget 600",
    "gs-train vae --data images/ -o /tmp/smoke --smoke"))
@click.argument("arch", type=click.Choice(sorted(DEFAULTS)))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Image folder.")
@click.option("-o", "--output", "--out", "out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--device", default="auto", show_default=True)
@click.option("--epochs", type=int, default=None, help="[default: the architecture's, see docs/training.md]")
@click.option("--batch", type=int, default=None, help="[default: the architecture's]")
@click.option("--lr", type=float, default=None, help="[default: the architecture's]")
@click.option("--time-budget", type=float, default=0.0, show_default=True, help="Seconds; 0 = none.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--amp", type=click.Choice(["auto", "bf16", "none"]), default="auto", show_default=True)
@click.option("--limit", type=int, default=None, help="Use only the first N images  [default: all]")
@click.option("--max-steps", type=int, default=None, help="[default: no limit]")
@click.option("--smoke", is_flag=True, help="A few CPU steps on 8 images, small widths: proves the loop.")
@click.option("--config", "config_json", default="{}", show_default=True, help="Architecture keywords as JSON.")
@click.option("--no-resume", is_flag=True)
@version_option
@_one_line
def main(arch, data, out, device, epochs, batch, lr, time_budget, seed, amp, limit, max_steps, smoke,
         config_json, no_resume):
    """Train ARCH (dcgan | began | vae) on the images in --data, writing checkpoints to --out."""
    config = json.loads(config_json)
    if smoke:
        limit, max_steps, batch, device = limit or 8, max_steps or 3, batch or 4, "cpu"
        config = {**{"dcgan": {"ngf": 8}, "began": {"ch": 16}, "vae": {"widths": [32, 16, 16, 8, 8, 8]}}[arch],
                  **config}
    extra = dict(d_ch=16, bn_batches=2) if smoke else {}
    rec = train(arch, data, out, device=device, epochs=epochs, batch=batch, lr=lr, time_budget=time_budget,
                seed=seed, amp=amp, limit=limit, max_steps=max_steps, config=config, resume=not no_resume,
                **extra)
    click.echo(f"{arch}: {rec['steps']} steps ({rec['epochs_done']} epochs) in {rec['train_seconds']} s "
               f"on {rec['device']} -> {out}")


if __name__ == "__main__":
    main()
