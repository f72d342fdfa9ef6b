"""Samples from cut generators (the paper's Fig. 8): every input of the cut at c drawn i.i.d. N(0, 1), pushed
through the tail. At c = 0 these are the generator's samples; past the first blocks they stop looking like
faces, which is the point: the cut generator is no longer a generative model, only a rich image prior.

The grid travels back inside the row (PNG bytes, base64, under ``_files``) so that only the driver writes
files, also on a Ray cluster.
"""
from __future__ import annotations

import base64
import io
import platform
import time
from typing import Any

import numpy as np

from ..io.images import grid, save_png


def png_bytes(x: np.ndarray) -> bytes:
    """(3, H, W) in [0, 1] -> PNG file bytes."""
    buf = io.BytesIO()
    save_png(x, buf)
    return buf.getvalue()


def run_samples(task, *, models_dir: str | None = None, device: str = "cpu", threads: int = 0) -> dict[str, Any]:
    """A grid of ``count`` (task option, default 8) samples of the cut generator at ``task.cut``.

    Row fields: ``cut``, ``count``, ``pixel_std`` (mean over pixels of the std across samples: how much the
    samples differ), ``saturated`` (fraction of values outside [0, 1] before clamping), ``seconds``, and
    the grid under ``_files``.
    """
    from ..solve.settings import resolve_cut
    from .cache import generator_for, manifest_for

    t0 = time.perf_counter()
    man = manifest_for(task.model, models_dir)
    cut = resolve_cut(man, task.cut)
    gen = generator_for(man, cut, device, threads)
    count = int(dict(task.options).get("count", 8))
    rng = np.random.default_rng([task.seed, cut, 8])
    lat = {n: rng.standard_normal((count, *gen.shapes[n])).astype(np.float32) for n in gen.inputs}
    x = gen.forward(lat)
    name = f"samples/{man.name}_c{cut}.png"
    row = task.as_dict()
    row.update({"cut": cut, "count": count, "pixel_std": float(np.clip(x, 0, 1).std(axis=0).mean()),
                "saturated": float(((x < 0) | (x > 1)).mean()), "provider": gen.provider,
                "host": platform.node(), "seconds": time.perf_counter() - t0,
                "_files": {name: base64.b64encode(png_bytes(grid(np.clip(x, 0, 1), ncol=count))).decode()}})
    return row
