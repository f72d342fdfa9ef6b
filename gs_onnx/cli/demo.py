"""``gs-demo``: measure a bundled CelebA test face at m/n = 0.163 and recover it without and with surgery, then with
the model's default method (what ``gs-recover meas.npy`` runs on these measurements: gs-pnp for BEGAN and DCGAN).

Prints the PSNRs and writes ``OUT/side_by_side.png`` (truth | c = 0 | c = recommended cut | the default where it is
not plain GS, labelled).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click
import numpy as np

from ..generator import registry
from .._version import provenance
from .common import (OneLineCommand, examples, one_line_errors, setup_logging, verbosity_options,
                         version_option)
from ..errors import GSError
from ..io.images import labelled, load_image, save_png
from ..physics import measure, paper_sigma
from ..metrics import psnr, seam, ssim
from ..physics import GaussianOperator
from ..io.progress import Progress
from ..io.publish import discard, publish, staging

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def default_image(size: int) -> Path:
    return SAMPLES / ("celeba64_182638.jpg" if size == 64 else "celeba_aligned_00000.jpg")


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-demo                                  # the default model (BEGAN), its validated budget",
    "gs-demo --model dcgan -o /tmp/demo",
    "gs-demo --budget paper --model dcgan     # the paper's 3 restarts x 500 iterations"))
@click.option("--model", default=registry.default_model, show_default="began, or $GS_ONNX_DEFAULT_MODEL")
@click.option("--image", type=click.Path(dir_okay=False), default=None,
              help="The face to measure  [default: a bundled CelebA test face]")
@click.option("--ratio", type=float, default=0.1628, help="m/n")
@click.option("--budget", type=click.Choice(["auto", "paper"]), default="auto",
              help="auto: the model's validated stopping rule, as gs-recover's default; paper: 3 restarts x 500 "
                   "iterations on every measurement.")
@click.option("--restarts", type=int, default=None, help="Overrides the budget's restarts.")
@click.option("--max-iter", type=int, default=None, help="Overrides the budget's iterations per restart.")
@click.option("--seed", type=int, default=0)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("-o", "--output", "--out", "out", type=click.Path(file_okay=False), default="demo-out")
@click.option("--models-dir", type=click.Path(file_okay=False), default=None)
@verbosity_options
@version_option
@one_line_errors
def main(model, image, ratio, budget, restarts, max_iter, seed, device, out, models_dir, quiet, verbose):
    """Recover a face from compressed measurements with c = 0 and with Generator Surgery, then with the model's
    default method (gs-recover's, where it is not plain GS); writes OUTPUT/side_by_side.png (truth | c = 0 | surgery |
    default, labelled with the PSNRs) and OUTPUT/demo.json. Every panel is recovered as gs-recover recovers it."""
    # every panel runs through gs_onnx.solve.registry.make_solver, as gs-recover runs --method gs --cut c and auto
    from ..physics.sidecar import sidecar_fields
    from ..solve.settings import Settings, recovery_plan

    setup_logging(quiet, verbose)
    man = registry.load(model, models_dir)
    c, h, w = man.image_shape
    img_path = Path(image) if image else default_image(h)
    x = load_image(img_path, h)
    if not 0 < ratio <= 1:
        raise GSError("--ratio must be in (0, 1]")
    m = int(round(ratio * man.n))
    op = GaussianOperator(m, man.n, seed)
    sigma = paper_sigma(man.n, m)
    y = measure(x.reshape(1, -1), op, sigma, seed)[0]
    restarts, b, stop = recovery_plan(man, Settings(budget=budget, restarts=restarts, max_iter=max_iter), "gaussian")
    if restarts < 1 or b.max_iter < 1:
        raise GSError("--restarts and --max-iter must be >= 1")
    cuts = [0, man.recommended_cut]
    outd = _claim_output(Path(out), Path(image) if image else None)   # the staging folder, published at the end
    try:
        if not quiet:
            click.echo(f"model {man.name} ({man.architecture}, {h}x{w}), image {img_path.name}, m = {m} "
                       f"(m/n = {m / man.n:.4f}), noise sigma {sigma:.3g}; {restarts} restart(s) x <= {b.max_iter} "
                       f"L-BFGS-B iterations, stopping: {', '.join(f'{k} {v}' for k, v in stop.describe().items())}")
        sidecar = {**sidecar_fields(op), "image_shape": list(man.image_shape), "model": man.name, "sigma": sigma}
        s = Settings(model=man.name, seed=seed, device=device, budget=budget, restarts=restarts, max_iter=max_iter,
                     models_dir=models_dir)
        results = {}
        for cut in cuts:
            image, fields, seconds, solver = _run("gs", y, sidecar, dataclasses.replace(s, cut=cut), op, f"c={cut}",
                                                  quiet)
            p = psnr(image, x)
            results[cut] = (image, p, seconds)
            if not quiet:
                its = "+".join(str(r["iterations"]) for r in fields["restarts"])
                lattice = "" if not man.lattice_cell else \
                    f", seam {seam(image, man.lattice_cell):.2f} (truth {seam(x, man.lattice_cell):.2f})"
                click.echo(f"cut {cut} ({solver.size} free values): PSNR {p:.2f} dB, SSIM {ssim(image, x):.3f}"
                           f"{lattice}, {its} iterations, {seconds:.1f} s on {solver.provider}")
        default = _default_method(y, sidecar, s, op, quiet)
        if default is not None:
            d_name, d_image, d_seconds = default
            d_psnr, d_ssim = psnr(d_image, x), ssim(d_image, x)
            if not quiet:
                click.echo(f"default ({d_name}, what gs-recover runs on these measurements): PSNR {d_psnr:.2f} dB, "
                           f"SSIM {d_ssim:.3f}, {d_seconds:.1f} s")
        panels = [(x, "truth")] + [(results[c_][0], f"c = {c_}: {results[c_][1]:.2f} dB") for c_ in cuts]
        if default is not None:
            panels.append((d_image, f"{d_name}: {d_psnr:.2f} dB"))
        gain = results[cuts[1]][1] - results[0][1]
        caption = f"{man.name}, m/n = {m / man.n:.3f}: surgery (c = {cuts[1]}) {gain:+.2f} dB over c = 0"
        save_png(labelled(panels, caption), outd / "side_by_side.png")
        summary = {"model": man.name, "image": str(img_path), "m": m, "n": man.n, "sigma": sigma,
                   "restarts": restarts, "max_iter": b.max_iter, "stopping": stop.describe(),
                   "psnr": {f"cut{c_}": round(results[c_][1], 3) for c_ in cuts},
                   "ssim": {f"cut{c_}": round(ssim(results[c_][0], x), 4) for c_ in cuts},
                   "seconds": {f"cut{c_}": round(results[c_][2], 2) for c_ in cuts},
                   "provenance": provenance()}
        if default is not None:
            summary["default"] = {"method": d_name, "psnr": round(d_psnr, 3), "ssim": round(d_ssim, 4),
                                  "seconds": round(d_seconds, 2)}
        (outd / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
        if not quiet:
            click.echo(f"surgery (c={cuts[1]}) vs no surgery (c=0): {gain:+.2f} dB; side_by_side.png: truth | c=0 | "
                       f"surgery{' | ' + d_name if default is not None else ''}")
        publish(outd, Path(out))
    finally:
        discard(outd)
    if not quiet:
        click.echo(f"wrote {Path(out) / 'side_by_side.png'} and {Path(out) / 'demo.json'}")


#: What an older gs-demo left in its folder (before it published through a staging folder): adopted, replaced whole.
DEMO_FILES = {"side_by_side.png", "demo.json"}


def _claim_output(out: Path, image: Path | None) -> Path:
    """The staging folder for the demo's output (:func:`gs_onnx.io.publish.staging`): the demo's own folder is
    replaced whole, run after run; a non-empty folder gs-onnx did not write, a model folder and a folder holding the
    image are refused before any work."""
    from ..io.publish import MARK

    try:
        names = {p.name for p in out.iterdir()} if out.is_dir() else set()
        if names and names <= DEMO_FILES and all((out / n).is_file() for n in names):   # an older gs-demo's
            (out / MARK).write_text("a results folder written by gs-onnx (gs-demo): --overwrite may replace it\n")
    except OSError as e:
        raise GSError(f"cannot read {out}: {e.strerror or e}") from None
    return staging(out, overwrite=True, inputs=[image] if image else [])


def _run(name, y, sidecar, s, op, label, quiet):
    """(image (C, H, W), report fields, seconds, solver) of method ``name`` on the demo's measurements, run as
    gs-recover runs it (:func:`gs_onnx.solve.registry.make_solver`), with a progress bar."""
    from ..solve.registry import make_solver

    bar = Progress(label, enabled=False if quiet else None)
    t = time.perf_counter()
    solver = make_solver(name, y[None], sidecar, s, op=op)
    image, fields = solver.solve(0, y, lambda f, what: bar.update(f, what))
    bar.close()
    return np.asarray(image, np.float32).reshape(sidecar["image_shape"]), fields, time.perf_counter() - t, solver


def _default_method(y, sidecar, s, op, quiet):
    """(name, image, seconds) of the model's default method on the demo's measurements, with the demo's budget
    flags; None where the default is plain GS (the surgery panel already shows it)."""
    from ..solve.registry import AUTO, resolve_method

    name, _ = resolve_method(AUTO, sidecar, s)
    if name == "gs":
        return None
    image, _, seconds, _ = _run(name, y, sidecar, s, op, name, quiet)
    return name, image, seconds


if __name__ == "__main__":
    main()
