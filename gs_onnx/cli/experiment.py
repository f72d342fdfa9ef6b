"""``gs-experiment``: the paper's experiments, one command per figure, resumable, with plots.

    gs-experiment cs --models dcgan --images 20 --ratios 0.0488,0.1628 -o runs/exp/cs
    gs-experiment plot runs/exp/cs

Every preset appends one row per (image, ratio, method, restart) to ``OUT/results.jsonl`` as it finishes,
skips the rows already there on a rerun, and ends by writing ``OUT/summary.md`` and the figures
(``--no-plot`` to skip). ``--workers N`` runs N local processes; ``--ray local|auto|HOST:PORT`` runs the
same tasks on Ray, the results still written by this process only.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .._version import provenance
from .common import OneLineCommand, OneLineGroup, examples, one_line_errors, version_option
from ..errors import GSError
from ..solve.lasso import MAX_ITER as LASSO_MAX_ITER
from ..io.progress import Progress
from ..experiment import presets as P
from ..experiment.pool import execute
from ..experiment.results import ResultsFile


def _floats(s: str | None, option: str = "--ratios") -> tuple[float, ...] | None:
    if s is None:
        return None
    if s == "paper" and option == "--ratios":
        return P.PAPER_RATIOS
    try:
        vals = tuple(float(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise GSError(f"{option} {s!r} is not a comma-separated list of numbers"
                      + (" (or 'paper', the paper's 10 ratios)" if option == "--ratios" else "")) from None
    if not vals:
        raise GSError(f"{option} is an empty list")
    return vals


def _ints(s: str | None, option: str) -> tuple[int, ...] | None:
    if s is None:
        return None
    try:
        vals = tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise GSError(f"{option} {s!r} is not a comma-separated list of integers") from None
    if not vals:
        raise GSError(f"{option} is an empty list")
    return vals


def _names(s: str | None) -> tuple[str, ...] | None:
    return None if s is None else tuple(v.strip() for v in s.split(",") if v.strip()) or None


def _user_data_hint() -> str:
    """The default data root in words (the same on every machine, so that --help and the docs agree)."""
    return "the user data folder, ~/.local/share/gs-onnx/data on Linux (docs/experiments.md, Data)"


#: Every option a preset may read, by name; each preset lists the ones it reads (PRESET_OPTIONS), so its
#: --help shows exactly those.
OPTIONS = {
    "models": click.option("--models", default=None, help="Comma-separated model names or folders  [default: the preset's]"),
    "datasets": click.option("--datasets", default=None,
                             help="Comma-separated: celeba-test, celeba-train, coco, generated, or image folders  "
                                  "[default: the preset's]"),
    "images": click.option("--images", default=20, type=int, help="First N images of each dataset."),
    "ratios": click.option("--ratios", default=None, help="Comma-separated m/n values, or 'paper' (the paper's 10)  "
                                                          "[default: the preset's]"),
    "methods": click.option("--methods", default=None, help="Comma-separated: gs, nogs, lasso-dct, mganprior, "
                                                            "deep-decoder, iagan (what the preset allows)"),
    "restarts": click.option("--restarts", default=None, type=int,
                             help="Restarts of gs/nogs/mganprior  [default: the budget's: the plan's, or the paper's 3]"),
    "max_iter": click.option("--max-iter", default=None, type=int,
                             help="L-BFGS-B iterations per restart  [default: the budget's; the paper's for raw]"),
    "budget": click.option("--budget", default="auto", type=click.Choice(["auto", "paper"]),
                           help="gs, nogs: auto = the model's stopping plan for the operator, as gs-recover runs it "
                                "(one task per image); paper = 3 restarts x 500 iterations, every measurement fitted, "
                                "one task per restart (mganprior always runs the paper's, as in gs-recover)"),
    "cut": click.option("--cut", default=None, type=int, help="Cut for gs/mganprior  [default: the model's]"),
    "seed": click.option("--seed", default=0, type=int, help="Base seed of A, noise and starts."),
    "operator": click.option("--operator", default="gaussian", type=click.Choice(["gaussian", "srdct"]),
                             help="The compressed-sensing operator (other physics: gs-experiment inpaint, superres, "
                                  "physics)."),
    "steps": click.option("--steps", default=None, type=int, help="Adam steps of Deep Decoder / IAGAN's latent phase."),
    "finetune_steps": click.option("--finetune-steps", default=None, type=int, help="IAGAN's joint phase steps."),
    "skip_prior": click.option("--skip-prior", default=None, type=float, metavar="W",
                               help="gs: weight of the prior on the skip source the cut frees (as gs-recover)  "
                                    "[default: the model's recommended weight]"),
    "lasso_iter": click.option("--lasso-iter", default=None, type=int,
                               help=f"Lasso-DCT iterations at most  [default: {LASSO_MAX_ITER}]"),
    "data_root": click.option("--data-root", default=None, type=click.Path(file_okay=False),
                              help="Folder with celeba_crops64/, celeba_aligned/, coco/ (gs-experiment data lays them "
                                   "out)  [default: $GS_ONNX_DATA, else " + _user_data_hint() + "]"),
    "models_dir": click.option("--models-dir", default=None, type=click.Path(file_okay=False),
                               help="Folder of models searched first (then $GS_ONNX_MODELS, then the shipped ones)."),
    "out": click.option("-o", "--output", "--out", "out", default=None, type=click.Path(file_okay=False),
                        help="Results folder  [default: runs/experiments/PRESET]"),
    "workers": click.option("--workers", default=1, type=int, help="Local worker processes."),
    "threads": click.option("--threads", default=0, type=int,
                            help="Threads per task (0: all cores in-process, 1 per worker)."),
    "device": click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda", "auto"]),
                           help="Where each task's ONNX Runtime sessions run."),
    "ray": click.option("--ray", "ray_address", default=None, metavar="local|auto|HOST:PORT",
                        help="Run the tasks on Ray: 'local' starts one here, 'auto'/HOST:PORT joins a cluster."),
    "dry_run": click.option("--dry-run", is_flag=True, help="Only count the tasks to run."),
    "no_plot": click.option("--no-plot", is_flag=True, help="Do not write the figures at the end."),
    "progress": click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on a terminal]"),
}
_RUN = ("models_dir", "out", "workers", "threads", "device", "ray", "dry_run", "no_plot", "progress", "seed")
_RECOVERY = ("models", "datasets", "images", "restarts", "max_iter", "cut", "operator", "data_root") + _RUN
_PLANNED = _RECOVERY + ("budget", "skip_prior")
_IMAGE_PHYSICS = tuple(o for o in _PLANNED if o != "operator")
PRESET_OPTIONS = {
    "cs": _PLANNED + ("ratios", "methods", "lasso_iter"),
    "baselines": _PLANNED + ("ratios", "methods", "steps", "finetune_steps", "lasso_iter"),
    "raw": tuple(o for o in _RECOVERY if o != "operator") + ("methods",),
    "untrained": _PLANNED + ("ratios", "methods"),
    "init": _PLANNED + ("ratios", "methods"),
    "cuts": _PLANNED + ("ratios",),
    "samples": ("models",) + _RUN,
    "budget": _RECOVERY + ("ratios",),
    "inpaint": _IMAGE_PHYSICS + ("ratios", "methods", "lasso_iter", "steps"),
    "superres": _IMAGE_PHYSICS + ("methods", "lasso_iter", "steps"),
    "physics": _IMAGE_PHYSICS + ("methods", "lasso_iter", "steps"),
}
_DEFAULTS = {"models": None, "datasets": None, "images": 20, "ratios": None, "methods": None, "restarts": None,
             "max_iter": None, "cut": None, "seed": 0, "operator": "gaussian", "steps": None, "finetune_steps": None,
             "lasso_iter": None, "data_root": None, "models_dir": None, "out": None, "workers": 1, "threads": 0,
             "device": "cpu", "ray_address": None, "dry_run": False, "no_plot": False, "progress": None, "budget": "auto",
             "skip_prior": None}


def _run(preset: str, kw: dict, extra: dict) -> None:
    kw = {**_DEFAULTS, **kw}
    cfg = P.Config(models=_names(kw["models"]), datasets=_names(kw["datasets"]), images=kw["images"],
                   ratios=_floats(kw["ratios"]), methods=_names(kw["methods"]), restarts=kw["restarts"],
                   seed=kw["seed"], max_iter=kw["max_iter"], cut=kw["cut"], operator=kw["operator"],
                   steps=kw["steps"], finetune_steps=kw["finetune_steps"], lasso_iter=kw["lasso_iter"],
                   data_root=kw["data_root"], models_dir=kw["models_dir"], budget=kw["budget"],
                   skip_prior=kw["skip_prior"], dry_run=kw["dry_run"], **extra)
    for name in ("restarts", "max_iter", "steps", "lasso_iter", "workers", "images"):
        v = kw[name]
        if v is not None and v < 1:
            raise GSError(f"--{name.replace('_', '-')} must be >= 1")
    if kw["seed"] < 0 or kw["threads"] < 0:
        raise GSError("--seed and --threads must be >= 0")
    tasks = P.PRESETS[preset](cfg)
    out = Path(kw["out"] or Path("runs") / "experiments" / preset)
    results = ResultsFile(out, create=not kw["dry_run"])
    if kw["dry_run"]:
        pending = len(tasks) if cfg.missing else len(results.pending(tasks))
        click.echo(f"{preset}: {len(tasks)} task(s), {pending} not yet in {results.path}")
        for why in cfg.missing:
            click.echo(f"warning: {why}", err=True)
        return
    (out / "experiment.json").write_text(json.dumps({"preset": preset, "argv": sys.argv[1:],
                                                     "provenance": provenance()}, indent=1) + "\n")
    threads = kw["threads"] or (0 if kw["workers"] <= 1 and not kw["ray_address"] else 1)
    prog = Progress(f"gs-experiment {preset}", kw["progress"])
    try:
        ran = execute(tasks, results, workers=kw["workers"], threads=threads, device=kw["device"],
                      models_dir=kw["models_dir"], ray=kw["ray_address"], progress=prog,
                      log=lambda s: click.echo(s, err=True))
    finally:
        prog.close()
    click.echo(f"{preset}: {ran} task(s) ran, {len(results.done())} row(s) in {results.path}")
    if not kw["no_plot"]:
        _plot(out, None)


def _plot(folder: Path, out: Path | None) -> None:
    from ..experiment.plot import plot

    rows = ResultsFile(folder).rows() if (Path(folder) / "results.jsonl").is_file() else []
    if not rows:
        raise GSError(f"no results in {folder} (expected {Path(folder) / 'results.jsonl'})")
    written, note = plot(folder, rows, out)
    for p in written:
        click.echo(f"wrote {p}")
    if note:
        click.echo(f"warning: {note}", err=True)


@click.group(cls=OneLineGroup, epilog=examples(
    "gs-experiment cs --models dcgan --images 5 --ratios 0.0488,0.1628 -o runs/cs",
    "gs-experiment budget --models dcgan --images 10 -o runs/budget",
    "gs-experiment plot runs/cs"))
@version_option
def main() -> None:
    """The paper's experiments, one command per figure (Park et al., Generator Surgery)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _preset_command(name: str, doc: str, extra_opts=(), to_extra=lambda kw: {}, example: str = ""):
    def cmd(**kw):
        extra = to_extra(kw)
        _run(name, kw, extra)

    cmd.__doc__ = doc
    cmd = one_line_errors(cmd)
    for o in reversed(extra_opts):
        cmd = o(cmd)
    for key in reversed(PRESET_OPTIONS[name]):
        cmd = OPTIONS[key](cmd)
    ex = examples(example or f"gs-experiment {name} --models dcgan --images 5 -o runs/{name}",
                  f"gs-experiment {name} --dry-run")
    return main.command(name, help=doc, short_help=doc.split(": ", 1)[-1], epilog=ex, cls=OneLineCommand)(cmd)


_preset_command("cs", "Fig. 2: PSNR vs m/n for no-GS, GS and Lasso-DCT per model on CelebA test and COCO.",
                example="gs-experiment cs --models dcgan --images 5 --ratios 0.0488,0.1628 -o runs/cs")
_preset_command("baselines", "Fig. 3 / Table 1: GS vs mGANprior vs Deep Decoder vs IAGAN, with free parameters / n.",
                example="gs-experiment baselines --methods gs,mganprior --images 3 --ratios 0.1628 -o runs/bl")
_preset_command("raw", "Fig. 4 left: A = I, no noise, c=0 vs the cut on generated, train, test and COCO images.",
                example="gs-experiment raw --models dcgan --images 3 --max-iter 100 -o runs/raw")
_preset_command("untrained", "Fig. 4 right: GS with trained vs randomly initialised weights.",
                [click.option("--untrained", default=None,
                              help="The untrained twin  [default: the installed model MODEL-untrained]")],
                lambda kw: {"untrained": kw.pop("untrained")})
_preset_command("init", "Fig. 6: latent inits zero, cn01, normal5, normal10 and the Lasso-DCT warm start.",
                [click.option("--inits", default=None, help="Comma-separated inits  [default: all five]")],
                lambda kw: {"inits": _names(kw.pop("inits"))})
_preset_command("cuts", "Fig. 7: PSNR vs the cut index on a validation split; the best cut is selected.",
                [click.option("--cuts", "cut_list", default=None, help="Comma-separated cuts  [default: all]")],
                lambda kw: {"cuts": _ints(kw.pop("cut_list"), "--cuts")})
_preset_command("samples", "Fig. 8: sample grids of the cut generator at every cut.",
                [click.option("--cuts", "cut_list", default=None, help="Comma-separated cuts  [default: all]"),
                 click.option("--count", default=8, type=int, help="Samples per cut.")],
                lambda kw: {"cuts": _ints(kw.pop("cut_list"), "--cuts"), "count": kw.pop("count")},
                example="gs-experiment samples --models dcgan --count 4 -o runs/samples")
_preset_command("budget", "Stopping: PSNR vs iterations and seconds, fixed budgets vs held-out stopping rules.",
                [click.option("--rules", default=None,
                              help="Comma-separated: paper (traced), holdout (traced), auto (the default rule as "
                                   "gs-recover runs it)  [default: all three]"),
                 click.option("--holdouts", default=None,
                              help="Comma-separated held-out fractions of the holdout traces  [default: 0.1]"),
                 click.option("--conditions", default=None,
                              help="Other measurement models instead of --ratios (the physics preset's: mask10, "
                                   "mask30, box, sr4, fourier25, blur2, denoise)")],
                lambda kw: {"rules": _names(kw.pop("rules")), "holdouts": _floats(kw.pop("holdouts"), "--holdouts"),
                            "conditions": _names(kw.pop("conditions"))},
                example="gs-experiment budget --models dcgan --ratios 0.1628 --images 10 -o runs/budget")

_preset_command("inpaint", "Inpainting: PSNR vs the fraction of pixels kept (random pixels), no GS vs GS vs Lasso-DCT.",
                example="gs-experiment inpaint --models dcgan --ratios 0.1,0.3 --images 5 --restarts 1 "
                        "--max-iter 200 -o runs/inpaint")
_preset_command("superres", "Super-resolution: PSNR vs the downsampling factor, no GS vs GS vs Lasso-DCT.",
                [click.option("--factors", default=None, help="Comma-separated integer factors  [default: 2,4,8]")],
                lambda kw: {"factors": _ints(kw.pop("factors"), "--factors")},
                example="gs-experiment superres --models dcgan --factors 4 --images 5 --restarts 1 --max-iter 200 "
                        "-o runs/superres")
_preset_command("physics", "Every measurement model once: inpainting 10/30 %, a missing box, SR x4, Fourier 25 %, "
                "blur, denoising; no GS vs GS.",
                [click.option("--conditions", default=None,
                              help="Comma-separated: mask10, mask30, box, sr4, fourier25, blur2, denoise  [default: all]")],
                lambda kw: {"conditions": _names(kw.pop("conditions"))},
                example="gs-experiment physics --models dcgan --images 20 --restarts 1 --max-iter 200 -o runs/physics")


@main.command("plot", cls=OneLineCommand, epilog=examples("gs-experiment plot runs/cs",
                                                          "gs-experiment plot runs/cs -o /tmp/figures"))
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("-o", "--output", "--out", "out", default=None, type=click.Path(file_okay=False),
              help="Where to write  [default: FOLDER]")
@one_line_errors
def plot_cmd(folder: str, out: str | None) -> None:
    """Figures (PNG) and summary.md from FOLDER/results.jsonl."""
    _plot(Path(folder), Path(out) if out else None)


@main.command("data", cls=OneLineCommand, epilog=examples(
    "gs-experiment data --celeba ~/Downloads/img_align_celeba.zip --coco ~/Downloads/train2017",
    "gs-experiment data --celeba ~/Downloads/img_align_celeba --train 20000 --data-root /data/gs"))
@click.option("--celeba", type=click.Path(), default=None,
              help="CelebA img_align_celeba/ (000001.jpg ...) or img_align_celeba.zip, as downloaded.")
@click.option("--coco", type=click.Path(file_okay=False), default=None,
              help="A folder of COCO images (e.g. train2017/): the first --coco-images by name.")
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="Where to lay them out  [default: $GS_ONNX_DATA, else " + _user_data_hint() + "]")
@click.option("--train", default=5000, type=int, help="Faces of CelebA's train partition (the first ids).")
@click.option("--test", default=500, type=int, help="Faces of CelebA's test partition (the first ids).")
@click.option("--coco-images", default=128, type=int, help="COCO photos.")
@click.option("--overwrite", is_flag=True, help="Replace target folders that exist and are not empty.")
@click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on a terminal]")
@one_line_errors
def data_cmd(celeba, coco, data_root, train, test, coco_images, overwrite, progress) -> None:
    """Lay out a downloaded CelebA (aligned faces and their 64 px crops, official train/test partition) and
    COCO where the presets' named data sets (celeba-test, celeba-train, coco) are read from."""
    from ..experiment.data import layout

    root = Path(data_root) if data_root else P.default_data_root()
    bar = Progress("gs-experiment data", progress, total=1.0)
    try:
        rec = layout(root, celeba, coco, train=train, test=test, coco_images=coco_images, overwrite=overwrite,
                     progress=lambda d, t: bar.update(d / t, f"{d}/{t} files"))
    finally:
        bar.close()
    for folder, k in sorted(rec["written"].items()):
        click.echo(f"wrote {root / folder}/ ({k} images)")
