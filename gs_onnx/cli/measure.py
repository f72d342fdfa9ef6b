"""``gs-measure``: measure images with a seeded operator; writes a ``.npy``, its ``.json`` sidecar and, where the
measurement is itself an image, one PNG of it per image.

The operators and their parameters come from the registry (:mod:`gs_onnx.physics`): every registered type that
builds from parameters is an ``--operator`` choice and every parameter an option.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import click
import numpy as np

from ..generator import registry
from ..errors import GSError
from ..io.images import image_orientation, load_image
from ..io.paths import model_folder_at
from ..generator.manifest import sha256_file
from ..physics import base as physics
from .._version import provenance
from .common import (OneLineCommand, examples, models_dir_option, one_line_errors, output_option,
                     setup_logging, verbosity_options, version_option)


def _option_name(param: str) -> str:
    return "--" + param.replace("_", "-")


def _params_table() -> dict[str, list[tuple[str, physics.Param]]]:
    """{parameter name: [(operator type, Param)]} over every operator gs-measure can build."""
    out: dict[str, list] = {}
    for kind in physics.measuring_types():
        for p in physics.operator_class(kind).params:
            out.setdefault(p.name, []).append((kind, p))
    return out


def _operator_params(f):
    """One click option per operator parameter of the registry (default: the operator's own)."""
    for name, uses in reversed(list(_params_table().items())):
        kind0, p0 = uses[0]
        help_ = "; ".join(f"{kind}: {p.help} [default: {p.default}]" for kind, p in uses)
        if p0.kind is bool:
            f = click.option(_option_name(name), name, is_flag=True, default=None, help=help_)(f)
        else:
            f = click.option(_option_name(name), name, type=p0.kind, default=None, help=help_)(f)
    return f


def measure_images(images, model: str, *, ratio=None, m=None, seed=0, noise="auto", crop="auto",
                   models_dir=None, operator="gaussian", **params):
    """Measure images for ``model``: returns (y (B, m) float32, sidecar dict, previews (B, C, H, W) or None).
    See ``gs-measure``; ``params`` are the operator's (``keep=0.2``, ``factor=4``, ...)."""
    from ..physics import sigma_for
    from ..physics.noise import measure

    man = registry.load(model, models_dir)
    c, h, w = man.image_shape
    n = man.n
    cls = physics.operator_class(operator)
    given = {k: v for k, v in params.items() if v is not None}
    mine = {p.name for p in cls.params}
    for k in given:
        if k not in mine:
            theirs = ", ".join(_option_name(p) for p in sorted(mine)) or "none"
            raise GSError(f"{_option_name(k)} is not a parameter of --operator {operator} (its parameters: {theirs})")
    if cls.counts_measurements:
        if (ratio is None) == (m is None):
            raise GSError(f"--operator {operator} needs exactly one of --ratio and --m")
        if ratio is not None:
            if not 0 < ratio <= 1:
                raise GSError(f"--ratio must be in (0, 1], got {ratio}")
            m = max(1, int(round(ratio * n)))
        if not 1 <= m <= n:
            raise GSError(f"m = {m} is impossible for n = {n} (need 1 <= m <= n)")
    elif ratio is not None or m is not None:
        free = ", ".join(k for k in physics.measuring_types() if physics.operator_class(k).counts_measurements)
        raise GSError(f"--ratio/--m set the number of measurements of {free}; --operator {operator} takes "
                      + (", ".join(_option_name(p) for p in sorted(mine)) or "no parameters"))
    if seed < 0:
        raise GSError("--seed must be >= 0")
    op = physics.make(operator, (c, h, w), seed, **({"m": m} if cls.counts_measurements else {}), one_shot=True,
                      **given)
    xs = np.stack([load_image(p, h, crop).reshape(-1) for p in images])
    sigma = sigma_for(noise, op)
    # one A x per image: a dense A is streamed in row chunks, never held whole (any m fits in memory)
    y = measure(xs, op, sigma, seed)
    sidecar = {
        "model": man.name, "operator": op.describe(), "operator_fingerprint": op.fingerprint(), "seed": seed,
        "m": op.m, "n": n, "ratio": op.m / n,
        "image_shape": [c, h, w], "noise": str(noise), "sigma": sigma,
        "sources": [{"path": str(p), "sha256": sha256_file(Path(p)), "exif_orientation": image_orientation(p)}
                    for p in images],
        "preprocessing": {"orientation": "EXIF applied", "crop": crop, "size": h, "resize": "Lanczos",
                          "range": "[0, 1]", "flatten": "C, H, W"},
        "provenance": provenance(),
    }
    return y, sidecar, op.preview(y)


def _earlier_measurement(out: Path) -> int | None:
    """How many images the measurement file an earlier gs-measure wrote at ``out`` holds, read from its sidecar
    (``<stem>.json``, a gs-onnx measurement sidecar); None where there is no such sidecar (no earlier run, or files
    gs-measure did not write)."""
    from ..io.measurement import read_sidecar

    side = out.with_suffix(".json")
    if side.is_symlink():
        return None
    try:
        meta = read_sidecar(side)
    except GSError:
        return None
    shape = meta.get("shape")
    ok = isinstance(shape, list) and shape and isinstance(shape[0], int) and 0 < shape[0] <= 1 << 20
    return shape[0] if ok else 0


def _check_targets(out: Path, count: int, images, overwrite: bool) -> list[Path]:
    """The files this run will write (the ``.npy``, its sidecar, a preview per image), checked: none of them is an
    image to measure, none sits in a model folder, and an existing one is replaced only with ``--overwrite`` and
    only where it is an earlier measurement's (its sidecar is a gs-onnx measurement sidecar). Returns the earlier
    run's previews (those this run does not rewrite are removed after writing, so none passes for this run's)."""
    targets = [out, out.with_suffix(".json"), *preview_paths(out, count)]
    for img in images:
        for p in targets:
            if p.exists() and Path(img).exists() and os.path.samefile(img, p):
                raise GSError(f"{p} is one of the images to measure: writing there would replace it; -o another file")
    home = model_folder_at(out.parent)
    if home is not None:
        raise GSError(f"{out} lies inside the model folder {home}: nothing is written into a model; -o another "
                      "folder")
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    earlier = _earlier_measurement(out)
    if existing and not overwrite:
        raise GSError(f"{existing[0]} exists: pass --overwrite to replace it, or -o another file")
    if existing and earlier is None:
        raise GSError(f"{existing[0]} was not written by gs-measure ({out.with_suffix('.json').name} is not a "
                      "measurement sidecar): --overwrite replaces only an earlier measurement; remove it yourself, or "
                      "-o another file")
    stale = [p for p in preview_paths(out, earlier or 0) if p.is_file() and not p.is_symlink()]
    return [p for p in stale if not any(Path(img).exists() and os.path.samefile(img, p) for img in images)]


def _remove_stale_previews(stale: list[Path]) -> None:
    """Remove the previews (``<stem>_NNN.png``) an earlier run on the same output wrote that this one did not (it
    measured fewer images, or an operator without previews): they would pass for this run's. Only the earlier
    run's own, as its sidecar counts them; never another file that happens to be named so."""
    for p in stale:
        try:
            p.unlink()
        except OSError as e:
            raise GSError(f"cannot remove the earlier run's preview {p}: {e.strerror or e}") from None


def preview_paths(out: Path, count: int) -> list[Path]:
    """Where gs-measure writes the measurement images: ``<stem>_001.png``, ... beside the ``.npy``."""
    return [out.with_name(f"{out.stem}_{i + 1:03d}.png") for i in range(count)]


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    from ..io.images import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="PNG")
    return buf.getvalue()


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-measure face.jpg --model dcgan --ratio 0.1628            # writes meas.npy + meas.json",
    "gs-measure a.jpg b.jpg --model began --m 8002 --operator srdct -o faces.npy",
    "gs-measure face.jpg --model dcgan --operator mask --keep 0.2 -o masked.npy     # + masked_001.png",
    "gs-measure face.jpg --operator box -o box.npy                                 # a missing centre square",
    "gs-measure face.jpg --model dcgan --operator downsample --factor 4 -o small.npy",
    "gs-measure face.jpg --operator fourier --keep 0.25 --density centre -o kspace.npy",
    "gs-measure face.jpg --operator blur --sigma 2 -o blurred.npy",
    "gs-measure face.jpg --operator identity --noise 0.1 -o noisy.npy",
    "gs-measure face.jpg --model dcgan --ratio 0.05 --noise none --seed 3 -o clean.npy --overwrite"))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", default=registry.default_model, show_default="began, or $GS_ONNX_DEFAULT_MODEL",
              help="Model whose image size is used.")
@click.option("--operator", type=click.Choice(physics.measuring_types()), default="gaussian", show_default=True,
              help="gaussian: dense N(0, 1/m) matrix; srdct: subsampled randomized DCT; identity: denoising; "
                   "mask, box: inpainting; downsample: super-resolution; fourier: subsampled 2-D DFT; blur: "
                   "Gaussian blur (docs/physics.md).")
@click.option("--ratio", type=float, default=None, help="gaussian, srdct: m/n (e.g. 0.1628); or give --m.")
@click.option("--m", "m", type=int, default=None, help="gaussian, srdct: number of measurements; or give --ratio.")
@_operator_params
@click.option("--seed", type=int, default=0, help="Seed of the operator and of the noise.")
@click.option("--noise", default="auto", show_default=True,
              help="auto (the operator's: the paper's rule for gaussian/srdct, 0.01 per value otherwise) | paper | "
                   "none | SIGMA (per-measurement std, images in [0, 1]).")
@click.option("--crop", type=click.Choice(["auto", "aligned", "center", "none"]), default="auto",
              help="auto: the CelebA aligned crop (top 51, left 26, 128 px) for 178 x 218 images, else the centre "
                   "square; aligned; center; none (resize only).")
@output_option("The .npy to write (its sidecar .json, and for image-like measurements <stem>_001.png..., go "
               "beside it).", default="meas.npy", dir_okay=False)
@click.option("--overwrite", is_flag=True, help="Replace an earlier measurement at OUTPUT (its .npy, sidecar and "
              "previews); refused otherwise, and for files gs-measure did not write.")
@models_dir_option
@verbosity_options
@version_option
@one_line_errors
def measure_main(images, model, operator, ratio, m, seed, noise, crop, output, overwrite, models_dir, quiet,
                 verbose, **params):
    """Measure IMAGE... with a seeded operator (--operator) and noise: writes OUTPUT (.npy), its sidecar
    (.json) and, where the measurement is an image (masked, low-resolution, blurred, noisy, or the zero-filled
    inverse of Fourier samples), a PNG of it per image."""
    from ..io.measurement import write_measurements

    setup_logging(quiet, verbose)
    out = Path(output)
    if out.suffix != ".npy":
        raise GSError(f"output must end in .npy: {output}")
    if not out.parent.is_dir():
        raise GSError(f"output folder does not exist: {out.parent}")
    from ..io.publish import claimed

    with claimed(out):   # a second gs-measure on the same -o is refused while this one runs
        stale = _check_targets(out, len(images), images, overwrite)
        y, sidecar, previews = measure_images(images, model, ratio=ratio, m=m, seed=seed, noise=noise, crop=crop,
                                              models_dir=models_dir, operator=operator, **params)
        extra = [] if previews is None else list(zip(preview_paths(out, len(y)), map(_png_bytes, previews)))
        write_measurements(out, y, sidecar, extra=extra)
        _remove_stale_previews([p for p in stale if p not in {q for q, _ in extra}])
    if not quiet:
        pngs = f" and {len(extra)} PNG(s) ({extra[0][0].name}...)" if extra else ""
        click.echo(f"wrote {out} ({y.shape[0]} x {y.shape[1]}, {operator}, m/n = {sidecar['ratio']:.4f}, "
                   f"sigma = {sidecar['sigma']:.3g}), {out.with_suffix('.json')}{pngs}")
