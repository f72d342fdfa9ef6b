"""Command-line tools: ``gs-measure``, ``gs-recover``, ``gs-models``.

Bad input ends in one line ``error: <what is wrong>`` on stderr and exit status 2, with nothing written.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from . import registry
from .errors import GSError
from .images import load_image, save_png
from .manifest import sha256_file
from .engine.runtime import DEVICE_CHOICES
from .methods import METHODS
from .objective import ENGINE_CHOICES
from .restart import BATCH_MODES

EXIT_BAD_INPUT = 2


class _OneLineMain:
    """Usage errors (bad option values, wrong paths) print one ``error:`` line and exit 2."""

    def main(self, *args, **kwargs):
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:  # pragma: no cover - click >= 8.2 only
            click.echo(e.ctx.get_help())
            sys.exit(EXIT_BAD_INPUT)
        except click.UsageError as e:
            click.echo(f"error: {e.format_message().splitlines()[0]}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


class OneLineCommand(_OneLineMain, click.Command):
    """A click command whose usage errors print one ``error:`` line."""


class OneLineGroup(_OneLineMain, click.Group):
    """A click group (``gs-experiment``) whose usage errors print one ``error:`` line."""


def one_line_errors(fn):
    """Turn GSError (and a few OS errors) into ``error: ...`` + exit 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except GSError as e:
            click.echo(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except MemoryError:
            click.echo("error: out of memory (try a smaller m or batch)", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _models_dir_option(f):
    return click.option("--models-dir", type=click.Path(file_okay=False), default=None,
                        help="Folder of models searched first (then $GS_ONNX_MODELS, then the shipped ones).")(f)


# ------------------------------------------------------------------------------------------ gs-measure

def measure_images(images, model: str, *, ratio=None, m=None, seed=0, noise="paper", crop="auto",
                   models_dir=None, operator="gaussian"):
    """Measure images for ``model``: returns (y (B, m) float32, sidecar dict). See ``gs-measure``."""
    from .measurement import measure, noise_sigma
    from .operator import make_operator

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
        "model": man.name, "operator": op.describe(), "seed": seed, "m": m, "n": n, "ratio": m / n,
        "image_shape": [c, h, w], "noise": str(noise), "sigma": sigma,
        "sources": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in images],
        "preprocessing": {"crop": crop, "size": h, "resize": "Lanczos", "range": "[0, 1]",
                          "flatten": "C, H, W"},
    }
    return y, sidecar


@click.command(cls=OneLineCommand)
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", default=registry.default_model, show_default="began, or $GS_ONNX_DEFAULT_MODEL",
              help="Model whose image size is used.")
@click.option("--ratio", type=float, default=None, help="m/n (e.g. 0.1628).")
@click.option("--m", "m", type=int, default=None, help="Number of measurements.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of A and of the noise.")
@click.option("--operator", type=click.Choice(["gaussian", "srdct"]), default="gaussian", show_default=True,
              help="gaussian: dense N(0, 1/m) matrix; srdct: subsampled randomized DCT (O(n log n), O(n) memory).")
@click.option("--noise", default="paper", show_default=True, help="paper | none | SIGMA (per-measurement std).")
@click.option("--crop", type=click.Choice(["auto", "aligned", "center", "none"]), default="auto", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="meas.npy to write.")
@_models_dir_option
@one_line_errors
def measure_main(images, model, ratio, m, seed, operator, noise, crop, output, models_dir):
    """Measure IMAGE... with a seeded A (dense Gaussian N(0, 1/m), or a subsampled randomized DCT with
    --operator srdct): writes OUTPUT (.npy) + sidecar .json."""
    from .measurement import write_measurements

    out = Path(output)
    if out.suffix != ".npy":
        raise GSError(f"output must end in .npy: {output}")
    if not out.parent.is_dir():
        raise GSError(f"output folder does not exist: {out.parent}")
    y, sidecar = measure_images(images, model, ratio=ratio, m=m, seed=seed, noise=noise, crop=crop,
                                models_dir=models_dir, operator=operator)
    write_measurements(out, y, sidecar)
    click.echo(f"wrote {out} ({y.shape[0]} x {y.shape[1]}, m/n = {sidecar['ratio']:.4f}, "
               f"sigma = {sidecar['sigma']:.3g}) and {out.with_suffix('.json')}")


# ------------------------------------------------------------------------------------------ gs-recover

def _staging(outdir) -> tuple[Path, Path]:
    """(output folder, a fresh temp folder beside it): results are written to the temp folder and only
    published into the output folder when complete."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise GSError(f"output exists and is not a folder: {out}")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return out, Path(tempfile.mkdtemp(prefix=".gs-recover.", dir=parent))


def _publish(tmp: Path, outdir: Path) -> None:
    """Move finished files from ``tmp`` into ``outdir``; report.json last."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = sorted(tmp.iterdir(), key=lambda p: p.name == "report.json")
    for f in files:
        os.replace(f, outdir / f.name)


@click.command(cls=OneLineCommand)
@click.argument("measurements", type=click.Path(dir_okay=False))
@click.option("--method", type=click.Choice(list(METHODS)), default="gs", show_default=True,
              help="gs: Generator Surgery (--cut 0: plain CSGM); mganprior: N codes composed at the cut; "
                   "lasso-dct: sparsity baseline (no model); deep-decoder, iagan: need torch (export extra).")
@click.option("--model", default=None, help="Model name or folder (default: the one the sidecar names).")
@click.option("--cut", type=int, default=None, help="Blocks to cut (default: the model's recommended cut).")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--restarts", type=int, default=None,
              help="L-BFGS-B restarts (gs, mganprior)  [default: the budget's, 3]")
@click.option("--max-iter", type=int, default=None,
              help="Iterations per restart at most (default: the budget's, 500); Lasso-DCT: FISTA iterations (2000).")
@click.option("--budget", type=click.Choice(["auto", "paper"]), default=None,
              help="gs: auto = the model's validated stopping rule (held-out measurements decide when each restart "
                   "stops and which restart wins); paper = 3 restarts x 500 iterations on every measurement, as "
                   "the paper ran it  [default: auto]")
@click.option("--stop", type=click.Choice(["paper", "holdout", "refit"]), default=None,
              help="gs, mganprior: the stopping rule, overriding the budget's: paper (fixed budget), holdout (stop "
                   "on held-out measurements), refit (holdout, then refit on all)")
@click.option("--holdout", type=float, default=None,
              help="Fraction of the measurements held out for the stopping rule  [default: the budget's, 0.1]")
@click.option("--patience", type=int, default=None,
              help="Iterations without a better held-out error before a restart stops  [default: the budget's]")
@click.option("--max-fun", type=int, default=None, help="Evaluations per restart (default: 1.25 x max-iter).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial latents / weights; image i uses seed + i.")
@click.option("--init", default=None, help="cn01 | zero | normal | normal5 | normal10  [default: cn01]")
@click.option("--device", type=click.Choice(list(DEVICE_CHOICES)), default="auto", show_default=True)
@click.option("--threads", type=int, default=0, help="Intra-op threads (0: all cores).")
@click.option("--batch", type=click.Choice(["auto", *BATCH_MODES]), default=None,
              help="gs: none = restarts one after another; restarts = each image's restarts side by side in one "
                   "batch; images = every restart of every image in one batch (each keeps its own L-BFGS-B state "
                   "and stopping)  [default: auto = images]")
@click.option("--batch-size", "batch_size", type=int, default=None,
              help="gs, --batch images: images per lockstep batch  [default: 32 on CUDA, 8 on the CPU]")
@click.option("--engine", type=click.Choice(list(ENGINE_CHOICES)), default=None,
              help="gs: composed = the whole objective in one ONNX Runtime session; blocks = the per-block "
                   "reference path  [default: auto = composed]")
@click.option("--operator-on", "operator_on", type=click.Choice(["auto", "graph", "host"]), default=None,
              help="gs, composed engine: apply A inside the graph or on the host  [default: auto, the faster "
                   "per device and operator]")
@click.option("--cuda-graph/--no-cuda-graph", "cuda_graph", default=None,
              help="gs, composed engine on CUDA: capture and replay CUDA graphs  [default: off]")
@click.option("--lam", type=float, default=None, help="Lasso-DCT l1 weight  [default: 0.01]")
@click.option("--codes", type=int, default=None, help="mGANprior codes N  [default: 10 DCGAN, 20 otherwise]")
@click.option("--steps", type=int, default=None, help="Adam steps: Deep Decoder [5000], IAGAN latent phase [1600].")
@click.option("--lr", type=float, default=None, help="Adam rate: Deep Decoder [1e-2], IAGAN latent phase [0.1].")
@click.option("--finetune-steps", type=int, default=None, help="IAGAN joint phase steps  [default: 600]")
@click.option("--finetune-lr", type=float, default=None, help="IAGAN joint phase rate  [default: 1e-4]")
@click.option("--channels", type=int, default=None,
              help="Deep Decoder width (default: parameters matched to the GS latent of --model/--cut).")
@click.option("--reference", multiple=True, type=click.Path(dir_okay=False),
              help="Ground-truth image(s), one per measured image, for PSNR.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@_models_dir_option
@one_line_errors
def recover_main(measurements, method, outdir, reference, progress, **options):
    """Recover images from MEASUREMENTS (a gs-measure .npy with its sidecar) by Generator Surgery or one
    of the paper's baselines (--method). Every method writes the same report.json and PNGs."""
    from .measurement import read_measurements
    from .methods import Settings, make_solver, solve_many
    from .metrics import mean_std, psnr
    from .progress import Progress

    y, sidecar = read_measurements(measurements)
    settings = Settings(**options)
    solver = make_solver(method, y, sidecar, settings)
    shape = tuple(int(v) for v in sidecar.get("image_shape", ()))
    if len(shape) != 3:
        raise GSError("the sidecar has no image_shape (C, H, W)")
    refs = _load_refs(reference, y, sidecar, shape[1])
    out, tmp = _staging(outdir)
    try:
        label = method if solver.header.get("cut") is None else f"{method} {solver.header['model']} " \
                                                                  f"c={solver.header['cut']}"
        bar = Progress(f"recover {label}", enabled=progress)
        rows, images = [], []
        B = y.shape[0]
        step = solver.batch_size if getattr(solver, "batch", None) == "images" else 1
        chunks = [(lo, min(lo + step, B)) for lo in range(0, B, step)]
        fracs = np.zeros(B)
        for lo, hi in chunks:
            def cb(i, frac, what):
                fracs[i] = frac
                bar.update(float(fracs.sum()) / B, f"image {i + 1}/{B} {what}")

            t0 = time.perf_counter()
            solved = solve_many(solver, lo, y[lo:hi], cb)
            seconds = (time.perf_counter() - t0) / (hi - lo)
            for i, (image, fields) in zip(range(lo, hi), solved):
                png = f"recovered_{i:03d}.png"
                save_png(image, tmp / png)
                images.append(image)
                rows.append({"index": i, "psnr": None if refs is None else round(psnr(image, refs[i]), 4),
                             "seconds": round(seconds, 3), "png": png, **fields})
        bar.close()
        np.save(tmp / "recovered.npy", np.stack(images).astype(np.float32))
        ps = [r["psnr"] for r in rows if r["psnr"] is not None]
        report = {"method": method, **solver.header, "measurements": str(measurements), "m": int(y.shape[1]),
                  "n": int(np.prod(shape)), "operator": sidecar["operator"], "noise": sidecar.get("noise"),
                  "sigma": sidecar.get("sigma"), "psnr_mean": mean_std(ps)[0] if ps else None,
                  "psnr_std": mean_std(ps)[1] if ps else None, "images": rows}
        _finish(tmp, out, report, solver.how, solver.unit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _finish(tmp: Path, out: Path, report: dict, how: str, unit: str) -> None:
    """Write report.json, publish ``tmp`` into ``out`` and print one line per image."""
    (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    _publish(tmp, out)
    rows = report["images"]
    for r in rows:
        ps_txt = "" if r["psnr"] is None else f"  PSNR {r['psnr']:.2f} dB"
        click.echo(f"image {r['index']}: measurement error {r['measurement_error']:.4f}{ps_txt}  "
                   f"{r['seconds']:.1f} s, {r['evaluations']} {unit}")
    click.echo(f"wrote {out}/ (report.json, {len(rows)} PNG) {how}")


def _load_refs(reference, y, sidecar, size):
    if not reference:
        return None
    if len(reference) != y.shape[0]:
        raise GSError(f"{len(reference)} reference image(s) for {y.shape[0]} measured image(s)")
    crop = sidecar.get("preprocessing", {}).get("crop", "auto")
    return [load_image(p, size, crop) for p in reference]


# ------------------------------------------------------------------------------------------ gs-models

@click.command(cls=OneLineCommand)
@_models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@one_line_errors
def models_main(models_dir, as_json):
    """List installed models with their cuts and latent shapes."""
    rows = []
    for name, path in registry.available(models_dir).items():
        try:
            man = registry.load(str(path), verify=False)
        except GSError as e:
            rows.append({"name": name, "path": str(path), "error": str(e)})
            continue
        rows.append({"name": name, "path": str(path), "architecture": man.architecture,
                     "image": list(man.image_shape), "untrained": man.untrained,
                     "recommended_cut": man.recommended_cut,
                     "cuts": [{"cut": c.cut, "inputs": {n: list(man.tensors[n]) for n in c.inputs},
                               "size": c.size(man.tensors)} for c in man.cuts]})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no models found")
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']}: {r['error']}")
            continue
        tag = " (untrained)" if r["untrained"] else ""
        click.echo(f"{r['name']}: {r['architecture']}{tag}, image {'x'.join(map(str, r['image']))}, "
                   f"recommended cut {r['recommended_cut']}  [{r['path']}]")
        for c in r["cuts"]:
            ins = " + ".join(f"{n} {'x'.join(map(str, s))}" for n, s in c["inputs"].items())
            mark = " *" if c["cut"] == r["recommended_cut"] else ""
            click.echo(f"  cut {c['cut']}: {ins} ({c['size']} values){mark}")
