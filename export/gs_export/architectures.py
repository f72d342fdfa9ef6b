"""The paper's generators as sequences of blocks with named inputs and outputs.

A generator is ``G = B_{d-1} o ... o B_0``. Each block ``k`` reads named tensors from an environment and
writes new ones; block indices follow the paper, so "cut c" means "optimise the inputs of block c". The
environment starts with the latent ``"z"``; the image is the tensor ``"x"``.

Tensors are float32, NCHW (or N x D for vector latents); images leave the last block in the model's
``output_range`` (DCGAN: [-1, 1] through Tanh; BEGAN: unbounded, treated as [0, 1]; VAE: [0, 1] through
Sigmoid).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F


def upsample_nearest(x: torch.Tensor, s: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor ``s`` (N,C,H,W -> N,C,sH,sW).

    Written as unsqueeze/expand/reshape rather than ``F.interpolate`` so that traced backward graphs
    become a reshape+sum, never an index op whose ONNX gradient is a racy ScatterND (DESIGN.md).
    """
    if s == 1:
        return x
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1).expand(n, c, h, s, w, s)
    return x.reshape(n, c, h * s, w * s)


class Block(nn.Module):
    """One block of a generator: named inputs -> named outputs.

    Subclasses set ``inputs`` and ``outputs`` (tuples of tensor names) and implement ``forward`` taking
    the input tensors positionally and returning one tensor per output name (a tensor if one output).
    """

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


class Generator(nn.Module):
    """A generator as a list of blocks applied to an environment of named tensors.

    Attributes
    ----------
    blocks : nn.ModuleList of Block
    latent_name : str  -- name of the latent, "z"
    image_name : str   -- name of the image, "x"
    """

    arch: str = ""
    output_range: tuple[float, float] = (0.0, 1.0)
    latent_prior: str = "normal"

    def __init__(self, blocks: Sequence[Block]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def config(self) -> dict:
        """Constructor keyword arguments (JSON-able) that rebuild this architecture."""
        raise NotImplementedError

    def run(self, env: dict[str, torch.Tensor], start: int = 0) -> dict[str, torch.Tensor]:
        """Apply blocks ``start..d-1`` to ``env`` (a dict of named tensors); returns the extended env."""
        env = dict(env)
        for blk in list(self.blocks)[start:]:
            out = blk(*[env[n] for n in blk.inputs])
            if not isinstance(out, (tuple, list)):
                out = (out,)
            for n, t in zip(blk.outputs, out):
                env[n] = t
        return env

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.run({"z": z})["x"]

    def cut_inputs(self, c: int) -> list[str]:
        """Names of the tensors to optimise when the first ``c`` blocks are cut.

        They are the tensors read by blocks ``c..d-1`` that are produced by blocks ``0..c-1``
        (or the latent ``z`` itself), in order of first use.
        """
        if not 0 <= c < self.depth:
            raise ValueError(f"cut {c} out of range 0..{self.depth - 1}")
        produced_late: set[str] = set()
        names: list[str] = []
        for blk in list(self.blocks)[c:]:
            for n in blk.inputs:
                if n not in produced_late and n not in names:
                    names.append(n)
            produced_late.update(blk.outputs)
        return names

    @torch.no_grad()
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every named tensor (batch axis excluded)."""
        was = self.training
        self.eval()
        z = torch.zeros((1, *self.latent_shape))
        env = self.run({"z": z})
        self.train(was)
        return {k: tuple(v.shape[1:]) for k, v in env.items()}

    latent_shape: tuple[int, ...] = ()

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Draw ``n`` latents from the prior (``normal``: N(0,1); ``uniform``: U(-1,1))."""
        shape = (n, *self.latent_shape)
        if self.latent_prior == "uniform":
            return torch.rand(shape, generator=generator, device=device) * 2 - 1
        return torch.randn(shape, generator=generator, device=device)


# ----------------------------------------------------------------------------------------------- DCGAN

class _ConvTBlock(Block):
    def __init__(self, cin: int, cout: int, stride: int, pad: int, idx: int, last: bool):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False)
        self.bn = None if last else nn.BatchNorm2d(cout)
        self.last = last
        self.inputs = ("z",) if idx == 0 else (f"h{idx}",)
        self.outputs = ("x",) if last else (f"h{idx + 1}",)

    def forward(self, x):
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return torch.tanh(y) if self.last else F.relu(y)


class DCGAN(Generator):
    """DCGAN generator (Radford et al.), 64 px, as in the paper and the PyTorch DCGAN tutorial.

    z (nz x 1 x 1) -> ConvT(4, s1) 8*ngf x 4 x 4 -> ... -> ConvT 3 x 64 x 64 -> Tanh.
    Blocks: 0..3 = ConvTranspose + BatchNorm + ReLU, 4 = ConvTranspose + Tanh.
    Cut 1 leaves h1 of shape (8*ngf, 4, 4) = (512, 4, 4) at the defaults.
    """

    arch = "dcgan"
    output_range = (-1.0, 1.0)
    latent_prior = "normal"

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64):
        n_up = int(round(math.log2(image_size // 4)))
        if 4 * 2**n_up != image_size:
            raise ValueError("image_size must be 4 * 2^k")
        widths = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)]  # 512,256,128,64 for 64 px
        blocks: list[Block] = [_ConvTBlock(nz, widths[0], 1, 0, 0, False)]
        for i in range(1, n_up):
            blocks.append(_ConvTBlock(widths[i - 1], widths[i], 2, 1, i, False))
        blocks.append(_ConvTBlock(widths[-1], nc, 2, 1, n_up, True))
        super().__init__(blocks)
        self.nz, self.ngf, self.nc, self.image_size = nz, ngf, nc, image_size
        self.latent_shape = (nz, 1, 1)

    def config(self) -> dict:
        return dict(nz=self.nz, ngf=self.ngf, nc=self.nc, image_size=self.image_size)


def dcgan_tutorial_key_map(generator: DCGAN) -> dict[str, str]:
    """Key mapping from the PyTorch DCGAN tutorial layout (``main.<i>.*``) to :class:`DCGAN` keys."""
    m: dict[str, str] = {}
    j = 0
    for k, blk in enumerate(generator.blocks):
        m[f"main.{j}.weight"] = f"blocks.{k}.conv.weight"
        if blk.bn is not None:
            for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                m[f"main.{j + 1}.{p}"] = f"blocks.{k}.bn.{p}"
        j += 3 if blk.bn is not None else 2
    return m


# ----------------------------------------------------------------------------------------------- BEGAN

class _Linear2d(Block):
    def __init__(self, nz: int, ch: int, size: int, out: str):
        super().__init__()
        self.fc = nn.Linear(nz, ch * size * size)
        self.ch, self.size = ch, size
        self.inputs, self.outputs = ("z",), (out,)

    def forward(self, z):
        return self.fc(z).reshape(z.shape[0], self.ch, self.size, self.size)


ACTIVATIONS = ("none", "tanh", "sigmoid", "relu", "elu")


def _act(name: str):
    acts = {"elu": F.elu, "relu": F.relu, "none": (lambda t: t), "tanh": torch.tanh, "sigmoid": torch.sigmoid}
    if name not in acts:
        raise ValueError(f"output_activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    return acts[name]


class _BeganBlock(Block):
    """[concat(h, up(skip))] -> conv3x3+ELU -> conv3x3+ELU -> (upsample x2 | conv3x3 to nc + out act)."""

    def __init__(self, ch: int, idx: int, skip_scale: int | None, last: bool, nc: int, out_act: str):
        super().__init__()
        cin = ch * 2 if skip_scale is not None else ch
        self.conv1 = nn.Conv2d(cin, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.skip_scale = skip_scale
        self.last = last
        self.out_act = out_act
        self.to_rgb = nn.Conv2d(ch, nc, 3, 1, 1) if last else None
        ins = (f"h{idx}",) if skip_scale is None else (f"h{idx}", "h1")
        self.inputs = ins
        self.outputs = ("x",) if last else (f"h{idx + 1}",)

    def forward(self, h, skip=None):
        if self.skip_scale is not None:
            h = torch.cat([h, upsample_nearest(skip, self.skip_scale)], dim=1)
        h = F.elu(self.conv2(F.elu(self.conv1(h))))
        if self.last:
            return _act(self.out_act)(self.to_rgb(h))
        return upsample_nearest(h, 2)


class BEGAN(Generator):
    """BEGAN generator (Berthelot et al.) with the paper's skip connections.

    z (nz) -> Linear -> h1 (ch x 8 x 8); block 1: ConvBlock, upsample -> h2 (ch x 16 x 16); blocks 2..:
    concat(h_k, nearest-upsampled h1) -> ConvBlock -> upsample; last block ends with a 3x3 conv to RGB and
    the output activation. At 128 px: 6 blocks, cut 2 leaves h2 (128x16x16) and the skip source h1
    (128x8x8) as two independent optimisable inputs. Latent prior U(-1, 1).
    """

    arch = "began"
    latent_prior = "uniform"

    def __init__(self, nz: int = 64, ch: int = 128, image_size: int = 128, skip: bool = True,
                 output_activation: str = "none", nc: int = 3, base: int = 8):
        n_up = int(round(math.log2(image_size // base)))
        if base * 2**n_up != image_size or n_up < 1:
            raise ValueError("image_size must be base * 2^k, k >= 1")
        blocks: list[Block] = [_Linear2d(nz, ch, base, "h1")]
        for i in range(1, n_up + 2):
            last = i == n_up + 1
            scale = None if (i == 1 or not skip) else 2 ** (i - 1)
            blocks.append(_BeganBlock(ch, i, scale, last, nc, output_activation))
        super().__init__(blocks)
        self.nz, self.ch, self.image_size, self.skip = nz, ch, image_size, skip
        self.output_activation, self.nc, self.base = output_activation, nc, base
        _act(output_activation)  # refuse an unknown activation here, by name
        self.latent_shape = (nz,)
        self.output_range = (-1.0, 1.0) if output_activation == "tanh" else (0.0, 1.0)

    def config(self) -> dict:
        return dict(nz=self.nz, ch=self.ch, image_size=self.image_size, skip=self.skip,
                    output_activation=self.output_activation, nc=self.nc, base=self.base)


# ------------------------------------------------------------------------------------------------- VAE

class _VaeUpBlock(Block):
    def __init__(self, cin: int, cout: int, idx: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn = nn.BatchNorm2d(cout)
        self.inputs, self.outputs = (f"h{idx}",), (f"h{idx + 1}",)

    def forward(self, h):
        y = self.conv(upsample_nearest(h, 2))
        if self.bn is not None:
            y = self.bn(y)
        return F.leaky_relu(y, 0.2)


class _VaeOut(Block):
    def __init__(self, cin: int, nc: int, idx: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, nc, 3, 1, 1)
        self.inputs, self.outputs = (f"h{idx}",), ("x",)

    def forward(self, h):
        return torch.sigmoid(self.conv(h))


# Default widths: 4x4x256 after the Linear, then 256,128,64,32,16 channels at 8..128 px. About 3.1M
# parameters (12 MB float32) instead of the paper's 2048-wide 42M-parameter decoder, so that the exported
# model stays small; cut 1 then leaves 256x4x4 = 4096 values (the paper's: 2048x4x4).
VAE_WIDTHS = (256, 256, 128, 64, 32, 16)


class VAEDecoder(Generator):
    """VAE decoder: z (512) -> Linear -> h1 (w0 x 4 x 4) -> five [upsample x2, conv3x3, BN, LeakyReLU(0.2)]
    -> conv3x3 to RGB + Sigmoid (its own block). 128 px, output in [0, 1], latent prior N(0, 1)."""

    arch = "vae"
    output_range = (0.0, 1.0)
    latent_prior = "normal"

    def __init__(self, nz: int = 512, widths: Sequence[int] = VAE_WIDTHS, nc: int = 3):
        widths = tuple(int(w) for w in widths)
        blocks: list[Block] = [_Linear2d(nz, widths[0], 4, "h1")]
        for i in range(1, len(widths)):
            blocks.append(_VaeUpBlock(widths[i - 1], widths[i], i))
        blocks.append(_VaeOut(widths[-1], nc, len(widths)))
        super().__init__(blocks)
        self.nz, self.widths, self.nc = nz, widths, nc
        self.image_size = 4 * 2 ** (len(widths) - 1)
        self.latent_shape = (nz,)

    def config(self) -> dict:
        return dict(nz=self.nz, widths=list(self.widths), nc=self.nc)


class VAEEncoder(nn.Module):
    """Encoder for training: strided 4x4 convs (32, 64, 128, 256, 256) down to 4x4, then mu and logvar."""

    def __init__(self, nz: int = 512, nc: int = 3, image_size: int = 128, widths=(32, 64, 128, 256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = nc
        size = image_size
        for w in widths:
            layers += [nn.Conv2d(cin, w, 4, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2)]
            cin, size = w, size // 2
        self.net = nn.Sequential(*layers)
        self.mu = nn.Linear(cin * size * size, nz)
        self.logvar = nn.Linear(cin * size * size, nz)

    def forward(self, x):
        h = self.net(x).flatten(1)
        return self.mu(h), self.logvar(h)


@torch.no_grad()
def fuse_batchnorm(gen: Generator) -> Generator:
    """Fold every eval-mode ``bn`` into the preceding ``conv`` of its block, in place; returns ``gen``.

    BatchNorm in eval mode is a per-channel affine map, so ``bn(conv(x))`` equals a convolution with
    scaled weights and a bias. Exported graphs then hold one weight tensor per convolution, which the
    forward and VJP graphs share.
    """
    for blk in gen.blocks:
        bn, conv = getattr(blk, "bn", None), getattr(blk, "conv", None)
        if bn is None or conv is None:
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
        shape = [1] * conv.weight.dim()
        shape[axis] = -1
        w = conv.weight * scale.reshape(shape)
        b = shift if conv.bias is None else conv.bias * scale + shift
        new = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         bias=True, **({"output_padding": conv.output_padding} if axis == 1 else {}))
        new.weight.copy_(w)
        new.bias.copy_(b)
        blk.conv = new.eval()
        blk.bn = None
    return gen


ARCHITECTURES: dict[str, type[Generator]] = {"dcgan": DCGAN, "began": BEGAN, "vae": VAEDecoder}


def build(arch: str, **config) -> Generator:
    """Build an architecture by name (``dcgan``, ``began``, ``vae``) with constructor keywords."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**config)
