"""``gs-recover``: recover images from a measurement file by Generator Surgery or one of the paper's baselines."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click
import numpy as np

from ..engine.runtime import DEVICE_CHOICES
from ..errors import GSError
from ..io.images import grid, labelled, load_image, save_png
from ..io.paths import regular_file
from ..metrics import FIT_LIMIT, fit, fit_words
from ..io.publish import discard, publish, staging
from ..solve import registry
from ..solve.lasso import MAX_ITER as LASSO_MAX_ITER
from ..solve.methods.gs_graph import GRAPH_CHUNK, GRAPH_ENGINE
from ..solve.objective import ENGINE_CHOICES
from ..solve.registry import AUTO
from ..solve.restart import BATCH_MODES
from .._version import provenance
from .common import (OneLineCommand, examples, models_dir_option, one_line_errors, output_option,
                     setup_logging, verbosity_options, version_option)


class _MethodOption(click.Option):
    """``--method``, whose help lists every registered method with its summary when help is shown (a method of
    another package is only imported then, or when it is asked for)."""

    def get_help_record(self, ctx):
        base = self.help
        self.help = base + "; " + "; ".join(registry.describe()) + "."
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = base


def _known_method(name: str) -> str:
    """``--method``: ``auto`` or a registered method (checked when the options are parsed: a method registered at
    run time, from Python or a package's entry point, is accepted like a built-in one)."""
    if name != AUTO and name not in registry.available():
        raise click.BadParameter(f"unknown method {name!r}: choose one of {', '.join([AUTO, *registry.available()])}")
    return name


def default_output(measurements: str | Path, method: str = "gs") -> Path:
    """The output folder when ``-o`` is not given: ``<measurement file stem>-recovered`` beside it, and
    ``-recovered-<method>`` for a method asked by name but gs (so that methods on the same measurements do not
    collide); the default (``auto``, the model's recommended method) writes ``-recovered``."""
    p = Path(measurements)
    return p.with_name(f"{p.stem}-recovered" + ("" if method in ("gs", AUTO) else f"-{method}"))


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-recover --model began --cut 2 meas.npy                  # writes meas-recovered/",
    "gs-recover meas.npy --model dcgan --cut 1 --reference face.jpg -o out/ --overwrite",
    "gs-recover meas.npy --method lasso-dct -o lasso/             # the sparsity baseline, no model",
    "gs-recover meas.npy --method tv                               # total variation, no model"))
@click.argument("measurements", type=click.Path())
@click.option("--method", cls=_MethodOption, default=AUTO, metavar="NAME", callback=lambda ctx, p, v: _known_method(v),
              help="auto: the model's recommended method for the measurements' operator (gs-models shows it)")
@click.option("--model", default=None, help="Model name or folder  [default: the one the sidecar names]")
@click.option("--cut", type=int, default=None, help="Blocks to cut  [default: the model's recommended cut]")
@output_option("Output folder  [default: MEASUREMENTS' name + -recovered (+ -METHOD for --method given, but gs), "
               "beside it]",
               file_okay=False)
@click.option("--overwrite", is_flag=True, help="Replace an existing, non-empty output folder (whole).")
@click.option("--budget", type=click.Choice(["auto", "paper"]), default=None,
              help="gs: auto = the model's stopping plan validated for this operator (docs/physics.md, Budgets; "
                   "the paper's budget where none was); paper = 3 restarts x 500 iterations on every "
                   "measurement, as the paper ran it  [default: auto]")
@click.option("--restarts", type=int, default=None, help="Restarts (gs, mganprior)  [default: the budget's]")
@click.option("--max-iter", type=int, default=None,
              help="Iterations per restart at most  [default: the budget's]; Lasso-DCT: FISTA iterations "
                   f"[{LASSO_MAX_ITER}].")
@click.option("--max-fun", type=int, default=None, help="Evaluations per restart  [default: 1.25 x max-iter]")
@click.option("--stop", type=click.Choice(["fixed", "holdout", "refit"]), default=None,
              help="gs, mganprior: the stopping rule, overriding the budget's: fixed (every restart runs --max-iter "
                   "on every measurement), holdout (stop on held-out measurements), refit (holdout, then refit on "
                   "all measurements)")
@click.option("--holdout", type=float, default=None,
              help="Fraction of the measurements held out for a held-out rule  [default: the budget's, 0.1]")
@click.option("--patience", type=int, default=None,
              help="Iterations without a better held-out error before a restart stops  [default: the budget's]")
@click.option("--seed", type=int, default=0, help="Seed of the initial latents / weights; image i uses seed + i.")
@click.option("--init", default=None, help="cn01 | zero | normal | normal5 | normal10 | lasso  [default: cn01]")
@click.option("--optimizer", type=click.Choice(["scipy", "lbfgs", "adam"]), default=None,
              help="gs, mganprior: scipy = scipy's L-BFGS-B (the reference); lbfgs = the paper's torch L-BFGS "
                   "(steps of 20 iterations, history 100, its learning rates), batched over images x restarts "
                   "with its algebra where the engine runs; adam = torch's Adam (--lr, default 0.1), the "
                   "budget's iterations  [default: scipy; gs-tv under a centre box: lbfgs, as the recovery "
                   "graph runs it]")
@click.option("--line-search", "line_search", type=click.Choice(["none", "strong_wolfe"]), default=None,
              help="--optimizer lbfgs: torch's strong-Wolfe line search  [default: none, as the paper]")
@click.option("--lr", type=float, default=None,
              help="--optimizer lbfgs: the step [the paper's: 0.1 DCGAN, 1 BEGAN/VAE]; --optimizer adam: its rate "
                   "[0.1]; Adam rate of Deep Decoder "
                   "[1e-2] and IAGAN's latent phase [0.1].")
@click.option("--device", type=click.Choice(list(DEVICE_CHOICES)), default="auto",
              help="Where ONNX Runtime runs: auto reports what ran; cuda fails in one line unless CUDA really loads.")
@click.option("--threads", type=int, default=0, help="Intra-op threads (0: all cores).")
@click.option("--batch", type=click.Choice(["auto", *BATCH_MODES]), default=None,
              help="gs: none = restarts one after another; restarts = each image's restarts side by side in one "
                   "batch; images = every restart of the images of a chunk in one batch (each keeps its own "
                   "optimiser state and stopping)  [default: auto = images]")
@click.option("--batch-size", "batch_size", type=int, default=None,
              help="gs, --batch images: images per lockstep batch  [default: 32 on CUDA, 8 on the CPU]")
@click.option("--engine", type=click.Choice(list(ENGINE_CHOICES) + [GRAPH_ENGINE]), default=None,
              help="gs: composed = the whole objective in one ONNX Runtime session; blocks = the per-block "
                   "reference path; recovery-graph = the whole recovery (optimiser, stopping, winner) in one ONNX "
                   "graph, one run per image (--optimizer lbfgs, the default here, or adam; docs/recovery-graph.md)  "
                   "[default: auto = composed]")
@click.option("--operator-on", "operator_on", type=click.Choice(["auto", "graph", "host"]), default=None,
              help="gs, composed engine: A inside the graph or on the host  [default: auto, the faster per device "
                   "and operator]")
@click.option("--cuda-graph/--no-cuda-graph", "cuda_graph", default=None,
              help="gs, composed engine on CUDA: capture and replay CUDA graphs  [default: off]")
@click.option("--lam", type=float, default=None,
              help="Lasso-DCT's l1 weight; TV's weight (tv, gs-tv)  [default: per operator, chosen "
                   "on CelebA train faces]")
@click.option("--gamma", type=float, default=None,
              help="gs-tv: weight of ||x - G||^2, the pull towards the generator's image  [default: per operator, "
                   "chosen on CelebA train faces]")
@click.option("--codes", type=int, default=None, help="mGANprior codes N  [default: 10 DCGAN, 20 otherwise]")
@click.option("--denoiser", default=None, metavar="NAME_OR_FOLDER",
              help="pnp, gs-pnp: the ONNX denoiser (gs-models lists them)  [default: unet-celeba]")
@click.option("--skip-prior", type=float, default=None, metavar="W",
              help="gs: weight of a Gaussian prior on the skip source the cut frees (BEGAN's h1 at c >= 2), fitted "
                   "to the generator's own activations; it keeps recovery from drawing the model's 16-px lattice; "
                   "0 turns it off  [default: the model's recommended weight (began: see gs-models), else 0]")
@click.option("--steps", type=int, default=None, help="Adam steps: Deep Decoder [5000], IAGAN latent phase [1600].")
@click.option("--finetune-steps", type=int, default=None, help="IAGAN joint phase steps  [default: 600]")
@click.option("--finetune-lr", type=float, default=None, help="IAGAN joint phase rate  [default: 1e-4]")
@click.option("--channels", type=int, default=None,
              help="Deep Decoder width  [default: parameters matched to the GS latent of --model/--cut]")
@click.option("--reference", multiple=True, type=click.Path(dir_okay=False),
              help="Ground-truth image(s), one per measured image: PSNR and SSIM in the report, comparison PNGs.")
@click.option("--trust-sidecar", "trust_sidecar", is_flag=True,
              help="Accept a sidecar without its checksums (meta_sha256, operator_fingerprint: format_version 1): "
                   "only for files whose origin you know.")
@click.option("--strict", is_flag=True,
              help="Exit non-zero (after writing the results) when a recovery's residual is above 3 x the noise "
                   "the sidecar declares: the operator, the model or the noise claim does not fit.")
@click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on a terminal]")
@models_dir_option
@verbosity_options
@version_option
@one_line_errors
def recover_main(measurements, method, output, overwrite, reference, progress, quiet, verbose, trust_sidecar, strict,
                 **options):
    """Recover images from MEASUREMENTS (a gs-measure .npy with its sidecar) by Generator Surgery or one
    of the paper's baselines (--method). Every method writes the same report.json and PNGs: recovered_XXX.png,
    recovered.npy, and with --reference compare_XXX.png (truth | the measurement, where it is an image |
    recovery) and contact_sheet.png."""
    from ..io.measurement import read_measurements
    from ..solve.registry import make_solver, resolve_method, solve_many
    from ..solve.settings import Settings
    from ..io.progress import Progress

    setup_logging(quiet, verbose)
    out = Path(output) if output else default_output(measurements, method)
    if Path(measurements).is_dir():
        return _recover_folder(Path(measurements), out, overwrite, reference, quiet, method, options, progress, strict)
    y, sidecar = read_measurements(measurements, trust_sidecar=trust_sidecar)
    settings = Settings(**options)
    method, why = resolve_method(method, sidecar, settings)
    try:
        solver = make_solver(method, y, sidecar, settings)
    except GSError as e:
        if why and "does not apply" in str(e):  # a flag for another method than the one auto chose
            raise GSError(f"{e}, the model's recommended method for these measurements: give --method") from None
        raise
    if why:
        solver.header["method_chosen"] = why
    shape = tuple(int(v) for v in sidecar.get("image_shape", ()))
    if len(shape) != 3:
        raise GSError("the sidecar has no image_shape (C, H, W)")
    refs = _load_refs(reference, y, sidecar, shape[1])
    if getattr(solver, "note", None) and not quiet:
        click.echo(f"note: {solver.note}", err=True)
    op = getattr(solver, "op", None) or getattr(getattr(solver, "meas", None), "op", None)
    measured = op.preview(y) if refs is not None and op is not None and hasattr(op, "preview") else None
    sigma = sidecar.get("sigma") if isinstance(sidecar.get("sigma"), (int, float)) else None
    norms = np.linalg.norm(y.astype(np.float64), axis=1)
    spreads = np.linalg.norm(y.astype(np.float64) - y.astype(np.float64).mean(axis=1, keepdims=True), axis=1)
    cell = getattr(getattr(solver, "man", None), "lattice_cell", None)  # a model with a skip source: its seams
    block = getattr(op, "block_period", None)  # measurements of blocks (x4 super-resolution): the staircase

    def fit_of(i: int, err: float) -> dict:
        return fit(err, sigma, y.shape[1], norms[i], spreads[i])

    tmp = staging(out, overwrite, inputs=[measurements, Path(measurements).with_suffix(".json"), *reference])
    if why and not quiet:
        click.echo(why, err=True)
    rows, images, tiles = [], [], []
    B = y.shape[0]
    interrupted = False
    try:
        label = method if solver.header.get("cut") is None else f"{method} {solver.header['model']} " \
                                                                  f"c={solver.header['cut']}"
        bar = Progress(f"recover {label}", enabled=False if quiet else progress, total=B, unit="images")
        step = solver.batch_size if getattr(solver, "batch", None) == "images" else 1
        chunks = [(lo, min(lo + step, B)) for lo in range(0, B, step)]
        fracs = np.zeros(B)
        try:
            for lo, hi in chunks:
                def cb(i, frac, what):
                    fracs[i] = min(frac, 0.99)
                    bar.update(float(fracs.sum()), f"image {i + 1}/{B}: {what}")

                t0 = time.perf_counter()
                solved = solve_many(solver, lo, y[lo:hi], cb)
                seconds = (time.perf_counter() - t0) / (hi - lo)
                for i, (image, fields) in zip(range(lo, hi), solved):
                    fracs[i] = 1.0
                    row, tile = _write_image(tmp, i, image, fields, seconds, refs, method,
                                             None if measured is None else measured[i], fit_of, cell,
                                             getattr(solver, "disagreement", {}).pop(i, None), block)
                    rows.append(row)
                    images.append(image)
                    if tile is not None:
                        tiles.append(tile)
                bar.update(float(fracs.sum()), f"image {hi}/{B} done")
        except KeyboardInterrupt:  # keep the images already finished, then stop
            interrupted = True
        bar.close()
        if rows:
            _write_report(tmp, rows, images, tiles, method, solver, sidecar, measurements, y, shape, interrupted)
            publish(tmp, out)
    except OSError as e:
        raise GSError(f"cannot write the results into {tmp}: {e.strerror or e}") from None
    finally:
        discard(tmp)
    if interrupted:
        if rows:
            click.echo(f"interrupted: {len(rows)} of {B} image(s) finished, written to {out}/", err=True)
        raise KeyboardInterrupt
    if not quiet:
        for r in rows:
            q = "" if r["psnr"] is None else f"  PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.3f}"
            if r.get("disagreement"):
                q += f"  restarts differ on {100 * r['disagreement']['invented']:.0f} % of pixels"
            if r.get("seam"):
                sm = r["seam"]
                q += f"  seam {sm['recovered']:.2f}" + ("" if sm["truth"] is None else f" (truth {sm['truth']:.2f})")
            if r.get("blocks"):
                bl = r["blocks"]
                q += f"  {bl['period']}-px blocks {bl['recovered']:.2f}" + \
                    ("" if bl["truth"] is None else f" (truth {bl['truth']:.2f})")
            click.echo(f"image {r['image']}/{B}: {fit_words(r['fit'])}{q}  "
                       f"{r['seconds']:.1f} s, {r['evaluations']} {solver.unit}")
        extra = ", comparison PNGs, contact_sheet.png" if tiles else ""
        click.echo(f"wrote {out}/ (report.json, {len(rows)} recovered PNG{extra}) {solver.how}")
    _judge_fit(rows, strict, quiet, out, shortened=any(options.get(k) is not None for k in ("max_iter", "max_fun")))


def _judge_fit(rows: list[dict], strict: bool, quiet: bool, out: Path, shortened: bool = False) -> None:
    """The fit's verdicts after the results are written: a warning, or with --strict exit 2 unless every image
    fits (an image without a verdict, no noise declared, or with a noise claim that explains anything, fails it).
    A ``mismatch`` (half of ||y|| or more unexplained: another operator's measurements, or noise) exits 2 even
    without --strict, unless the run was ``shortened`` (``--max-iter`` or ``--max-fun`` given: an image a few
    iterations from its start explains little of anything), where it is a warning."""
    verdicts = [(r.get("fit") or {}).get("verdict") for r in rows]
    wrong = [r for r, v in zip(rows, verdicts) if v == "mismatch"]
    if wrong:
        worst = max(r["fit"]["relative"] for r in wrong)
        what = (f"{len(wrong)} of {len(rows)} image(s) leave {100 * worst:.0f} % of ||y|| unexplained: these "
                "measurements were not made by the operator the sidecar describes (another seed, size or type), or "
                "they are noise")
        if not shortened or strict:
            raise GSError(f"{what} (results written to {out}/)")
        if not quiet:
            click.echo(f"warning: {what}, or --max-iter/--max-fun stopped the recovery far too early", err=True)
    off = [r["image"] for r, v in zip(rows, verdicts) if v == "does not fit"]
    vague = [r["image"] for r, v in zip(rows, verdicts) if v == "uninformative"]
    unknown = [r["image"] for r, v in zip(rows, verdicts) if v is None]
    words = []
    if off:
        words.append(f"{len(off)} of {len(rows)} image(s) leave a residual above {FIT_LIMIT:g} x the noise the "
                     "sidecar declares: the model cannot explain these measurements (an image off its range), or "
                     "the operator, the model or the noise claim does not fit them")
    if vague:
        words.append(f"{len(vague)} of {len(rows)} image(s) have a declared noise that explains most of their "
                     "measurements by itself: their fit proves nothing")
    if strict and unknown:
        words.append(f"{len(unknown)} of {len(rows)} image(s) have no declared noise to judge the fit against")
    if not words:
        return
    if strict:
        raise GSError(f"--strict: {'; '.join(words)} (results written to {out}/)")
    if not quiet:
        for w in words:
            click.echo(f"warning: {w}", err=True)

def _recover_folder(folder: Path, out: Path, overwrite: bool, reference, quiet: bool, method: str, options: dict,
                    progress=None, strict: bool = False):
    """Run a recovery folder (``gs-export recovery``): every file verified against recovery.json, the graph run in
    chunks of iterations for the progress bar (the one run's result, bit for bit); writes recovered_001.png,
    recovered.npy, report.json (and compare_001.png with a reference)."""
    from ..io.recovery_folder import check_against_graph, read_reference
    from ..io.progress import Progress
    from ..solve.folder_check import check_residual, open_folder
    from ..solve.recovery_graph import GraphRecovery, progress_words

    if not (folder / "recovery.json").exists():
        raise GSError(f"{folder} is a directory, not a measurement file, nor a recovery folder (it has no recovery.json)")
    given = [k for k, v in options.items() if v not in (None, 0, "auto") and k not in ("device", "threads")]
    if method != AUTO or given:
        what = f"--{given[0].replace('_', '-')}" if given else f"--method {method}"
        raise GSError(f"{what} does not apply to a recovery folder: its plan is in recovery.json")
    graph, inputs, iface, op = open_folder(folder)
    if len(reference) > 1:
        raise GSError(f"{len(reference)} reference images for the one image of a recovery folder")
    shape = [int(v) for v in iface.get("image_shape", [])]
    if reference:
        from ..generator.manifest import sha256_file

        regular_file(Path(reference[0]), "reference image", "not found")
        want = (iface.get("source") or {}).get("sha256") if isinstance(iface.get("source"), dict) else None
        if want and sha256_file(Path(reference[0])) != want:
            raise GSError(f"reference {reference[0]} is not the image this folder's measurements were made from "
                          f"({iface['source'].get('path')}): its sha256 differs")
    ref = load_image(reference[0], shape[1], "auto") if reference else read_reference(folder, iface)
    runner = GraphRecovery(graph, options.get("device") or "auto", options.get("threads") or 0)
    check_against_graph(runner.session.get_inputs(), inputs)
    tmp = staging(out, overwrite, inputs=[folder, *reference])
    try:
        bar = Progress(f"recover {folder.name}", enabled=False if quiet else progress)
        t0 = time.perf_counter()
        res = runner.run(inputs, chunk=GRAPH_CHUNK, progress=lambda it, budget, o: bar.update(
            it / max(budget, 1), progress_words(it, budget, o)))
        seconds = time.perf_counter() - t0
        bar.close()
        check_residual(op, inputs, res)
        image = res["image"]
        win = int(res["winner"])
        fields = {"index": int(iface.get("image", 0)), "winner": win, "score": [float(v) for v in res["score"]],
                  "iterations": [int(v) for v in res["iterations"]],
                  "best_iteration": [int(v) for v in res["best_iteration"]]}
        folder_method = str(iface.get("method", "gs"))
        if "pnp_chosen" in res:  # gs-pnp: which candidate the held-out rows chose
            names = ["gs"] + list((iface.get("plan") or {}).get("pnp", {}).get("candidates", []))
            chosen = int(res["pnp_chosen"])
            fields["pnp"] = {"chosen": names[chosen] if chosen < len(names) else chosen,
                             "held_out": [float(v) for v in res["pnp_held_out"]],
                             "iterations": [int(v) for v in res["pnp_rows_iterations"]]}
        if "tv_iterations" in res:  # gs-tv: the TV stage's run
            fields["tv"] = {"iterations": int(res["tv_iterations"]), "objective": float(res["tv_objective"]),
                            "converged": bool(res["tv_converged"])}
        sigma = iface.get("sigma") if isinstance(iface.get("sigma"), (int, float)) else None
        y = inputs["y"].reshape(-1)
        y64 = y.astype(np.float64)
        fit_of = (lambda i, err: fit(float(res["residual"]), sigma, y.size, float(np.linalg.norm(y64)),
                                     float(np.linalg.norm(y64 - y64.mean())))) if "residual" in res else None
        fields["measurement_error"] = float(res["residual"]) if "residual" in res else None
        row, _ = _write_image(tmp, 0, image, fields, seconds, None if ref is None else [ref], folder_method,
                              fit_of=fit_of)
        np.save(tmp / "recovered.npy", image[None].astype(np.float32), allow_pickle=False)
        report = {"method": folder_method, "engine": GRAPH_ENGINE, "recovery_folder": str(folder),
                  **{k: iface.get(k) for k in ("model", "model_sha256", "cut", "operator", "m", "n", "plan")},
                  "provider": runner.session.get_providers()[0], "psnr_mean": row["psnr"],
                  "provenance": provenance(runner.session.get_providers()[0]), "images": [row]}
        (tmp / "report.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
        publish(tmp, out)
    except OSError as e:
        raise GSError(f"cannot write the results into {tmp}: {e.strerror or e}") from None
    finally:
        discard(tmp)
    if not quiet:
        q = "" if row["psnr"] is None else f"  PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}"
        click.echo(f"{iface.get('model')} c={iface.get('cut')}: restart {win + 1} of {len(res['score'])} won after "
                   f"{row['iterations'][win]} iterations{q}  {seconds:.1f} s")
        click.echo(f"wrote {out}/ (report.json, recovered_001.png) in one ONNX graph on {report['provider']}")
    _judge_fit([row], strict, quiet, out)


#: The deviation that shows white in disagreement_XXX.png (the same scale for every image and method).
DISAGREEMENT_TOP = 0.15


def _write_image(tmp: Path, i: int, image, fields: dict, seconds: float, refs, method: str, measured=None,
                 fit_of=None, cell: int | None = None, spread=None, block: int | None = None):
    """recovered_XXX.png (and compare_XXX.png with a reference: truth | the measurement where it is an image |
    recovery | where the restarts disagree) of image i; its report row. ``cell``: the model's lattice period (a
    skip source), for the seam; ``spread``: the (H, W) map of where its restarts disagree (two restarts or more),
    written as disagreement_XXX.png."""
    from ..io.images import heatmap
    from ..metrics import psnr, seam, ssim

    png = f"recovered_{i + 1:03d}.png"
    save_png(image, tmp / png)
    row = {"image": i + 1, "index": i, "psnr": None, "ssim": None, "seconds": round(seconds, 3), "png": png, **fields}
    spread_panel = []
    if spread is not None:
        row["disagreement_png"] = f"disagreement_{i + 1:03d}.png"
        save_png(heatmap(spread, DISAGREEMENT_TOP), tmp / row["disagreement_png"])
        spread_panel = [(heatmap(spread, DISAGREEMENT_TOP), f"restarts differ ({100 * fields['disagreement']['invented']:.0f} %)")]
    if fit_of is not None:
        row["fit"] = fit_of(i, fields["measurement_error"])
    tile = None
    if cell is not None:
        row["seam"] = {"period": cell, "recovered": round(seam(image, cell), 4),
                       "truth": None if refs is None else round(seam(refs[i], cell), 4)}
    if block is not None and min(image.shape[1:]) > block:
        row["blocks"] = {"period": block, "recovered": round(seam(image, block), 4),
                         "truth": None if refs is None else round(seam(refs[i], block), 4)}
    if refs is not None:
        row["psnr"], row["ssim"] = round(psnr(image, refs[i]), 4), round(ssim(image, refs[i]), 4)
        row["compare_png"] = f"compare_{i + 1:03d}.png"
        panels = [(refs[i], "truth")] + ([] if measured is None else [(measured, "measured")])
        tile = labelled(panels + [(image, f"recovery ({method})")] + spread_panel,
                        f"image {i + 1}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f}")
        save_png(tile, tmp / row["compare_png"])
    return row, tile


def json_safe(v):
    """NaN and infinities as null (strict JSON readers reject bare NaN), recursively."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return json_safe(v.item())
    return v


def _write_report(tmp, rows, images, tiles, method, solver, sidecar, measurements, y, shape, interrupted):
    from ..metrics import mean_std

    np.save(tmp / "recovered.npy", np.stack(images).astype(np.float32))
    if tiles:
        save_png(grid(tiles, min(4, len(tiles)), pad=4), tmp / "contact_sheet.png")
    ps = [r["psnr"] for r in rows if r["psnr"] is not None]
    ss = [r["ssim"] for r in rows if r["ssim"] is not None]
    report = {"method": method, **solver.header, "measurements": str(measurements), "m": int(y.shape[1]),
              "n": int(np.prod(shape)), "operator": sidecar["operator"], "noise": sidecar.get("noise"),
              "sigma": sidecar.get("sigma"), "psnr_mean": mean_std(ps)[0] if ps else None,
              "psnr_std": mean_std(ps)[1] if ps else None, "ssim_mean": mean_std(ss)[0] if ss else None,
              "provenance": provenance(solver.header.get("provider")), "images": rows}
    if interrupted:
        report["interrupted"] = f"{len(rows)} of {y.shape[0]} images finished"
    (tmp / "report.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")


def _load_refs(reference, y, sidecar, size):
    if not reference:
        return None
    if len(reference) != y.shape[0]:
        raise GSError(f"{len(reference)} reference image(s) for {y.shape[0]} measured image(s)")
    return [load_ref(p, i, sidecar, size) for i, p in enumerate(reference)]


def load_ref(path, i: int, sidecar: dict, size: int) -> np.ndarray:
    """The reference image of image ``i`` of a measurement file, refused when the sidecar records another
    source file (sha256), preprocessed (crop) as the sidecar says: (3, size, size) float32 in [0, 1]."""
    from ..generator.manifest import sha256_file

    sources = sidecar.get("sources") or []
    regular_file(Path(path), "reference image", "not found")
    want = sources[i].get("sha256") if i < len(sources) else None
    if want and sha256_file(Path(path)) != want:
        raise GSError(f"reference {i + 1} ({path}) is not the image measured as image {i + 1} "
                      f"({sources[i].get('path')}): its sha256 differs")
    return load_image(path, size, sidecar.get("preprocessing", {}).get("crop", "auto"))
