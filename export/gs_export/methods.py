"""The baselines that train network weights, Deep Decoder and IAGAN, in torch behind ``gs-recover``.

Both optimise weights at every Adam step: Deep Decoder all of an untrained network's, IAGAN all of the
generator's. The torch-free runtime differentiates only with respect to block inputs (the exported VJP
graphs); running these two without torch would mean exporting weight-gradient graphs and writing Adam
around them, for two baselines whose point is comparison, not deployment. So they run in torch here, in
the export package, and register under the entry-point group ``gs_onnx.methods``: ``gs-recover --method
deep-decoder|iagan`` reads the same measurement files (A rebuilt from the sidecar by ``gs_onnx``) and writes
the same report rows as every other method. ``gs_onnx`` never imports this module's torch.

Deep Decoder (Heckel & Hand, ICLR 2019): a fixed random input (k, s, s) and d layers of
[1x1 conv, bilinear x2 upsampling, ReLU, channel normalisation], one more [1x1 conv, ReLU, channel norm],
then a 1x1 conv to RGB and a sigmoid. Only the weights are optimised (Adam, lr 1e-2, 5000 steps as in the
paper's code). The width k is chosen so that the parameter count matches the number of values Generator
Surgery optimises at the model's recommended cut (``--model``/``--cut`` pick which), unless ``--channels``.

IAGAN (Abu Hussein et al., AAAI 2020): Adam on the latent z (1600 steps, lr 0.1), then on z and all
generator weights together (600 steps, lr 1e-4), as in the paper's code. The generator is rebuilt from the
exported model folder (:func:`gs_export.from_onnx.torch_generator`, BatchNorm folded, so the joint phase
tunes the folded convolutions), fresh for every image.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gs_onnx.errors import GSError
from gs_onnx.generator.latent import INITS, init_latent
from gs_onnx.physics import operator_for
from gs_onnx.physics.datafit import measurement_error
from gs_onnx.solve.settings import Settings, cut_for, model_for

from .from_onnx import torch_generator


def _threads(s: Settings) -> None:
    if s.threads:
        torch.set_num_threads(s.threads)


def TorchMeasurement(sidecar: dict):
    """A of the sidecar in torch (:class:`gs_export.torch_physics.TorchOperator`)."""
    from .torch_physics import TorchOperator

    return TorchOperator(operator_for(sidecar))


# ------------------------------------------------------------------------------------ Deep Decoder

class DeepDecoder(nn.Module):
    """x = sigmoid(conv(norm(relu(conv(... up(conv(z)) ...))))) for a fixed input z of shape (k, s, s).

    ``sizes``: the spatial size after each of the d upsamplings (the last equals the image size).
    """

    def __init__(self, channels: int, out_channels: int, sizes: list[tuple[int, int]]):
        super().__init__()
        self.sizes = sizes
        k = channels
        self.convs = nn.ModuleList([nn.Conv2d(k, k, 1, bias=False) for _ in range(len(sizes) + 1)])
        self.norms = nn.ModuleList([nn.BatchNorm2d(k) for _ in range(len(sizes) + 1)])
        self.to_rgb = nn.Conv2d(k, out_channels, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for j, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = conv(h)
            if j < len(self.sizes):
                h = F.interpolate(h, size=self.sizes[j], mode="bilinear", align_corners=False)
            h = norm(F.relu(h))
        return torch.sigmoid(self.to_rgb(h))


def dd_sizes(h: int, w: int, start: int = 4) -> list[tuple[int, int]]:
    """Upsampling sizes from about ``start`` px up to (h, w), doubling each time."""
    d = max(1, int(round(math.log2(min(h, w) / start))))
    return [(max(1, round(h / 2 ** (d - j))), max(1, round(w / 2 ** (d - j)))) for j in range(1, d + 1)]


def dd_parameters(k: int, layers: int, out_channels: int) -> int:
    """Weights of a Deep Decoder of width k: (layers + 1) k x k convs and norms, and the RGB conv."""
    return (layers + 1) * (k * k + 2 * k) + k * out_channels


def dd_width(target: int, layers: int, out_channels: int) -> int:
    """The width whose parameter count is closest to ``target``."""
    return min(range(1, 2049), key=lambda k: abs(dd_parameters(k, layers, out_channels) - target))


class DeepDecoderSolver:
    unit = "steps"
    how = "by Deep Decoder (torch, CPU)"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings):
        _threads(s)
        self.shape = tuple(int(v) for v in sidecar.get("image_shape", []))
        if len(self.shape) != 3:
            raise GSError("the sidecar has no image_shape (C, H, W)")
        c, h, w = self.shape
        self.sizes = dd_sizes(h, w)
        if s.channels is not None:
            self.k, matched = s.channels, None
        else:
            man = model_for(sidecar, s)
            cut = cut_for(man, s)
            matched = {"model": man.name, "cut": cut, "free_values": man.cut(cut).size(man.tensors)}
            self.k = dd_width(matched["free_values"], len(self.sizes), c)
        self.steps = 5000 if s.steps is None else s.steps
        self.lr = 1e-2 if s.lr is None else s.lr
        self.meas = TorchMeasurement(sidecar)
        if self.meas.op.n != c * h * w:
            raise GSError(f"measurements are for n = {self.meas.op.n} but the image shape has {c * h * w}")
        self.s = s
        self.header = {"model": None, "cut": None, "channels": self.k, "layers": len(self.sizes) + 1,
                       "input": [self.k, max(1, round(h / 2 ** len(self.sizes))),
                                 max(1, round(w / 2 ** len(self.sizes)))],
                       "parameters": dd_parameters(self.k, len(self.sizes), c), "matched_to": matched,
                       "optimizer": {"name": "Adam", "lr": self.lr, "steps": self.steps},
                       "seed": s.seed, "device": "cpu", "provider": f"torch {torch.__version__} (CPU)"}

    def solve(self, i, y, progress):
        c, h, w = self.shape
        g = torch.Generator().manual_seed(self.s.seed + i)
        net = DeepDecoder(self.k, c, self.sizes)
        with torch.no_grad():  # seeded, reproducible initial weights (kaiming-uniform like torch's default)
            for p in net.parameters():
                if p.dim() == 4:
                    bound = 1.0 / math.sqrt(p.shape[1])
                    p.copy_(torch.rand(p.shape, generator=g) * 2 * bound - bound)
        z = torch.rand((1, *self.header["input"]), generator=g) * 0.1
        yt = torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(1, -1))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        net.train()  # channel normalisation: per-channel statistics of the one image
        for t in range(self.steps):
            opt.zero_grad(set_to_none=True)
            loss = self.meas.loss(net(z), yt)
            loss.backward()
            opt.step()
            if t % 50 == 0:
                progress(t / self.steps, f"step {t}")
        with torch.no_grad():
            x = net(z)[0]
            f = float(self.meas.loss(x[None], yt))
        image = x.clamp(0, 1).numpy().astype(np.float32)
        return image, {"measurement_error": measurement_error(self.meas.op, image, y), "objective": f,
                       "evaluations": self.steps}


def deep_decoder(y, sidecar, s, op=None):
    """The factory of ``gs-recover --method deep-decoder`` (A is rebuilt in torch from the sidecar)."""
    return DeepDecoderSolver(y, sidecar, s)


# ------------------------------------------------------------------------------------------ IAGAN

class IAGANSolver:
    unit = "steps"
    how = "by IAGAN (torch, CPU)"

    def __init__(self, y: np.ndarray, sidecar: dict, s: Settings):
        _threads(s)
        self.man = model_for(sidecar, s)
        self.meas = TorchMeasurement(sidecar)
        if self.meas.op.n != self.man.n:
            raise GSError(f"measurements are for n = {self.meas.op.n} but model {self.man.name} has n = {self.man.n}")
        self.init = s.init or "cn01"
        if self.init not in INITS:
            raise GSError(f"unknown --init {self.init!r}: choose one of {', '.join(INITS)}")
        self.gen = torch_generator(self.man)
        self.steps = 1600 if s.steps is None else s.steps
        self.lr = 0.1 if s.lr is None else s.lr
        self.ft_steps = 600 if s.finetune_steps is None else s.finetune_steps
        self.ft_lr = 1e-4 if s.finetune_lr is None else s.finetune_lr
        self.latent = self.man.cut(0).inputs[0]
        self.scale, self.shift = self.man.to_unit()
        self.s = s
        self.header = {"model": self.man.name, "model_dir": str(self.man.root), "cut": 0, "init": self.init,
                       "parameters": sum(p.numel() for p in self.gen.parameters()),
                       "optimizer": {"name": "Adam", "latent": {"lr": self.lr, "steps": self.steps},
                                     "joint": {"lr": self.ft_lr, "steps": self.ft_steps}},
                       "seed": s.seed, "device": "cpu", "provider": f"torch {torch.__version__} (CPU)"}

    def _x01(self, gen, z):
        return gen.run({"z": z})["x"] * self.scale + self.shift

    def solve(self, i, y, progress):
        gen = copy.deepcopy(self.gen)
        for p in gen.parameters():
            p.requires_grad_(False)
        shape = self.man.tensors[self.latent]
        z0 = init_latent(self.init, int(np.prod(shape)), np.random.default_rng([self.s.seed + i, 0]))
        z = torch.tensor(z0.reshape(1, *shape), dtype=torch.float32, requires_grad=True)
        yt = torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(1, -1))
        total = self.steps + self.ft_steps
        phases = [([z], self.lr, self.steps, "latent")]
        if self.ft_steps:
            phases.append(([z, *gen.parameters()], self.ft_lr, self.ft_steps, "joint"))
        done = 0
        for params, lr, steps, name in phases:
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=lr)
            for t in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = self.meas.loss(self._x01(gen, z), yt)
                loss.backward()
                opt.step()
                if t % 50 == 0:
                    progress((done + t) / total, f"{name} step {t}")
            done += steps
        with torch.no_grad():
            x = self._x01(gen, z)
            f = float(self.meas.loss(x, yt))
        image = x[0].clamp(0, 1).numpy().astype(np.float32)
        return image, {"measurement_error": measurement_error(self.meas.op, image, y), "objective": f,
                       "evaluations": total}


def iagan(y, sidecar, s, op=None):
    """The factory of ``gs-recover --method iagan`` (A is rebuilt in torch from the sidecar)."""
    return IAGANSolver(y, sidecar, s)
