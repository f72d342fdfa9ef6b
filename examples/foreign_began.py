"""A stand-in for a third-party BEGAN checkpoint (the layout of a typical public port: an ``l0`` Linear and
one ``decoder`` Sequential, 16 channels, 32 px, no skip connections, Tanh output), for following
docs/import.md without downloading anything. Random weights; a real checkpoint imports the same way.

    python examples/foreign_began.py G_25.pth        # writes {"netG": state_dict, "epoch": 25}
"""
from __future__ import annotations

import math
import sys

import torch
from torch import nn

NZ, CH, BASE, SIZE = 64, 16, 8, 32


class ForeignBEGAN(nn.Module):
    def __init__(self, nz: int = NZ, ch: int = CH, base: int = BASE, image_size: int = SIZE):
        super().__init__()
        self.ch, self.base = ch, base
        self.l0 = nn.Linear(nz, ch * base * base)
        layers: list[nn.Module] = []
        n_up = int(math.log2(image_size // base))
        for i in range(n_up + 1):
            layers += [nn.Conv2d(ch, ch, 3, 1, 1), nn.ELU(), nn.Conv2d(ch, ch, 3, 1, 1), nn.ELU()]
            if i < n_up:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.Conv2d(ch, 3, 3, 1, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, z):
        return self.decoder(self.l0(z).view(-1, self.ch, self.base, self.base))


def make(seed: int = 3) -> ForeignBEGAN:
    """The stand-in with seeded random weights (the last conv scaled up so that images have contrast)."""
    torch.manual_seed(seed)
    g = ForeignBEGAN().eval()
    with torch.no_grad():
        g.decoder[-2].weight.mul_(6.0)
    return g


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "G_25.pth"
    torch.save({"netG": make().state_dict(), "epoch": 25}, out)
    print(f"wrote {out}")
