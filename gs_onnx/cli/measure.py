"""``gs-measure``: measure images with a seeded operator; writes a ``.npy`` and its ``.json`` sidecar."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from .. import registry
from ..errors import GSError
from ..images import load_image
from ..manifest import sha256_file
from .common import (OneLineCommand, examples, models_dir_option, one_line_errors, output_option, provenance,
                     setup_logging, verbosity_options, version_option)


def measure_images(images, model: str, *, ratio=None, m=None, seed=0, noise="paper", crop="auto",
                   models_dir=None, operator="gaussian"):
    """Measure images for ``model``: returns (y (B, m) float32, sidecar dict). See ``gs-measure``."""
    from ..measurement import measure, noise_sigma
    from ..operator import make_operator

    man = registry.load(model, models_dir)
    c, h, w = man.image_shape
    n = man.n
    if (ratio is None) == (m is None):
        raise GSError("give exactly one of --ratio and --m")
    if ratio is not None:
        if not 0 < ratio <= 1:
            raise GSError(f"--ratio must be in (0, 1], got {ratio}")
        m = max(1, int(round(ratio * n)))
    if not 1 <= m <= n:
        raise GSError(f"m = {m} is impossible for n = {n} (need 1 <= m <= n)")
    if seed < 0:
        raise GSError("--seed must be >= 0")
    xs = np.stack([load_image(p, h, crop).reshape(-1) for p in images])
    sigma = noise_sigma(noise, n, m)
    # one A x per image: a dense A is streamed in row chunks, never held whole (any m fits in memory)
    op = make_operator(operator, m, n, seed, stream=True)
    y = measure(xs, op, sigma, seed)
    sidecar = {
        "model": man.name, "operator": op.describe(), "operator_fingerprint": op.fingerprint(), "seed": seed,
        "m": m, "n": n, "ratio": m / n,
        "image_shape": [c, h, w], "noise": str(noise), "sigma": sigma,
        "sources": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in images],
        "preprocessing": {"crop": crop, "size": h, "resize": "Lanczos", "range": "[0, 1]",
                          "flatten": "C, H, W"},
        "provenance": provenance(),
    }
    return y, sidecar


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-measure face.jpg --model dcgan --ratio 0.1628            # writes meas.npy + meas.json",
    "gs-measure a.jpg b.jpg --model began --m 8002 --operator srdct -o faces.npy",
    "gs-measure face.jpg --model dcgan --ratio 0.05 --noise none --seed 3 -o clean.npy --overwrite"))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", default=registry.default_model, show_default="began, or $GS_ONNX_DEFAULT_MODEL",
              help="Model whose image size is used.")
@click.option("--ratio", type=float, default=None, help="m/n (e.g. 0.1628); or give --m.")
@click.option("--m", "m", type=int, default=None, help="Number of measurements; or give --ratio.")
@click.option("--seed", type=int, default=0, help="Seed of A and of the noise.")
@click.option("--operator", type=click.Choice(["gaussian", "srdct"]), default="gaussian",
              help="gaussian: dense N(0, 1/m) matrix; srdct: subsampled randomized DCT (O(n log n), O(n) memory).")
@click.option("--noise", default="paper", help="paper | none | SIGMA (per-measurement std).")
@click.option("--crop", type=click.Choice(["auto", "aligned", "center", "none"]), default="auto")
@output_option("The .npy to write (its sidecar .json goes beside it).", default="meas.npy", dir_okay=False)
@click.option("--overwrite", is_flag=True, help="Replace an existing output (refused otherwise).")
@models_dir_option
@verbosity_options
@version_option
@one_line_errors
def measure_main(images, model, ratio, m, seed, operator, noise, crop, output, overwrite, models_dir, quiet,
                 verbose):
    """Measure IMAGE... with a seeded A (dense Gaussian N(0, 1/m), or a subsampled randomized DCT with
    --operator srdct) and the paper's noise: writes OUTPUT (.npy) and its sidecar (.json)."""
    from ..measurement import write_measurements

    setup_logging(quiet, verbose)
    out = Path(output)
    if out.suffix != ".npy":
        raise GSError(f"output must end in .npy: {output}")
    if not out.parent.is_dir():
        raise GSError(f"output folder does not exist: {out.parent}")
    for p in (out, out.with_suffix(".json")):
        if p.exists() and not overwrite:
            raise GSError(f"{p} exists: pass --overwrite to replace it, or -o another file")
    y, sidecar = measure_images(images, model, ratio=ratio, m=m, seed=seed, noise=noise, crop=crop,
                                models_dir=models_dir, operator=operator)
    write_measurements(out, y, sidecar)
    if not quiet:
        click.echo(f"wrote {out} ({y.shape[0]} x {y.shape[1]}, m/n = {sidecar['ratio']:.4f}, "
                   f"sigma = {sidecar['sigma']:.3g}) and {out.with_suffix('.json')}")
