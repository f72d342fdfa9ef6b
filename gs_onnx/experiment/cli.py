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

from ..cli.common import OneLineCommand, OneLineGroup, examples, one_line_errors, provenance, version_option
from ..errors import GSError
from ..progress import Progress
from . import presets as P
from .pool import execute
from .results import ResultsFile


def _floats(s: str | None) -> tuple[float, ...] | None:
    if s is None:
        return None
    if s == "paper":
        return P.PAPER_RATIOS
    try:
        vals = tuple(float(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise GSError(f"not a comma-separated list of numbers: {s!r}") from None
    if not vals:
        raise GSError("empty list of ratios")
    return vals


def _ints(s: str | None) -> tuple[int, ...] | None:
    if s is None:
        return None
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise GSError(f"not a comma-separated list of integers: {s!r}") from None


def _names(s: str | None) -> tuple[str, ...] | None:
    return None if s is None else tuple(v.strip() for v in s.split(",") if v.strip()) or None


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
    "restarts": click.option("--restarts", default=3, type=int, help="Restarts of gs/nogs/mganprior."),
    "max_iter": click.option("--max-iter", default=None, type=int,
                             help="L-BFGS-B iterations per restart  [default: the model's; the paper's for raw]"),
    "cut": click.option("--cut", default=None, type=int, help="Cut for gs/mganprior  [default: the model's]"),
    "seed": click.option("--seed", default=0, type=int, help="Base seed of A, noise and starts."),
    "operator": click.option("--operator", default="gaussian", type=click.Choice(["gaussian", "srdct"]),
                             help="The compressed-sensing operator (other physics: gs-experiment inpaint, superres, "
                                  "physics)."),
    "steps": click.option("--steps", default=None, type=int, help="Adam steps of Deep Decoder / IAGAN's latent phase."),
    "finetune_steps": click.option("--finetune-steps", default=None, type=int, help="IAGAN's joint phase steps."),
    "lasso_iter": click.option("--lasso-iter", default=None, type=int, help="Lasso-DCT iterations  [default: 2000]"),
    "data_root": click.option("--data-root", default=None, type=click.Path(file_okay=False),
                              help="Folder with celeba_crops64/, celeba_aligned/, coco/  [default: $GS_ONNX_DATA or "
                                   "../shared/data]"),
    "models_dir": click.option("--models-dir", default=None, type=click.Path(file_okay=False)),
    "out": click.option("-o", "--output", "--out", "out", default=None, type=click.Path(file_okay=False),
                        help="Results folder  [default: runs/experiments/PRESET]"),
    "workers": click.option("--workers", default=1, type=int, help="Local worker processes."),
    "threads": click.option("--threads", default=0, type=int,
                            help="Threads per task (0: all cores in-process, 1 per worker)."),
    "device": click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda", "auto"])),
    "ray": click.option("--ray", "ray_address", default=None, metavar="local|auto|HOST:PORT",
                        help="Run the tasks on Ray: 'local' starts one here, 'auto'/HOST:PORT joins a cluster."),
    "dry_run": click.option("--dry-run", is_flag=True, help="Only count the tasks to run."),
    "no_plot": click.option("--no-plot", is_flag=True, help="Do not write the figures at the end."),
    "progress": click.option("--progress/--no-progress", default=None, help="Progress bar  [default: on a terminal]"),
}
_RUN = ("models_dir", "out", "workers", "threads", "device", "ray", "dry_run", "no_plot", "progress", "seed")
_RECOVERY = ("models", "datasets", "images", "restarts", "max_iter", "cut", "operator", "data_root") + _RUN
PRESET_OPTIONS = {
    "cs": _RECOVERY + ("ratios", "methods", "lasso_iter"),
    "baselines": _RECOVERY + ("ratios", "methods", "steps", "finetune_steps", "lasso_iter"),
    "raw": tuple(o for o in _RECOVERY if o != "operator") + ("methods",),
    "untrained": _RECOVERY + ("ratios", "methods"),
    "init": _RECOVERY + ("ratios", "methods"),
    "cuts": _RECOVERY + ("ratios",),
    "samples": ("models",) + _RUN,
    "budget": _RECOVERY + ("ratios",),
    "inpaint": tuple(o for o in _RECOVERY if o != "operator") + ("ratios", "methods", "lasso_iter", "steps"),
    "superres": tuple(o for o in _RECOVERY if o != "operator") + ("methods", "lasso_iter", "steps"),
    "physics": tuple(o for o in _RECOVERY if o != "operator") + ("methods", "lasso_iter", "steps"),
}
_DEFAULTS = {"models": None, "datasets": None, "images": 20, "ratios": None, "methods": None, "restarts": 3,
             "max_iter": None, "cut": None, "seed": 0, "operator": "gaussian", "steps": None, "finetune_steps": None,
             "lasso_iter": None, "data_root": None, "models_dir": None, "out": None, "workers": 1, "threads": 0,
             "device": "cpu", "ray_address": None, "dry_run": False, "no_plot": False, "progress": None}


def _run(preset: str, kw: dict, extra: dict) -> None:
    kw = {**_DEFAULTS, **kw}
    cfg = P.Config(models=_names(kw["models"]), datasets=_names(kw["datasets"]), images=kw["images"],
                   ratios=_floats(kw["ratios"]), methods=_names(kw["methods"]), restarts=kw["restarts"],
                   seed=kw["seed"], max_iter=kw["max_iter"], cut=kw["cut"], operator=kw["operator"],
                   steps=kw["steps"], finetune_steps=kw["finetune_steps"], lasso_iter=kw["lasso_iter"],
                   data_root=kw["data_root"], models_dir=kw["models_dir"], **extra)
    for name in ("restarts", "max_iter", "steps", "lasso_iter", "workers", "images"):
        v = kw[name]
        if v is not None and v < 1:
            raise GSError(f"--{name.replace('_', '-')} must be >= 1")
    if kw["seed"] < 0 or kw["threads"] < 0:
        raise GSError("--seed and --threads must be >= 0")
    tasks = P.PRESETS[preset](cfg)
    out = Path(kw["out"] or Path("runs") / "experiments" / preset)
    results = ResultsFile(out)
    if kw["dry_run"]:
        click.echo(f"{preset}: {len(tasks)} task(s), {len(results.pending(tasks))} not yet in {results.path}")
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
    from .plot import plot

    rows = ResultsFile(folder).rows() if (Path(folder) / "results.jsonl").is_file() else []
    if not rows:
        raise GSError(f"no results in {folder} (expected {Path(folder) / 'results.jsonl'})")
    try:
        written = plot(folder, rows, out)
    except GSError as e:
        if "matplotlib" not in str(e):
            raise
        click.echo(f"error: {e} (results and summary.md are written)", err=True)
        sys.exit(2)
    for p in written:
        click.echo(f"wrote {p}")


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
                lambda kw: {"cuts": _ints(kw.pop("cut_list"))})
_preset_command("samples", "Fig. 8: sample grids of the cut generator at every cut.",
                [click.option("--cuts", "cut_list", default=None, help="Comma-separated cuts  [default: all]"),
                 click.option("--count", default=8, type=int, help="Samples per cut.")],
                lambda kw: {"cuts": _ints(kw.pop("cut_list")), "count": kw.pop("count")},
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
                lambda kw: {"rules": _names(kw.pop("rules")), "holdouts": _floats(kw.pop("holdouts")),
                            "conditions": _names(kw.pop("conditions"))},
                example="gs-experiment budget --models dcgan --ratios 0.1628 --images 10 -o runs/budget")

_preset_command("inpaint", "Inpainting: PSNR vs the fraction of pixels kept (random pixels), no GS vs GS vs Lasso-DCT.",
                example="gs-experiment inpaint --models dcgan --ratios 0.1,0.3 --images 5 --restarts 1 "
                        "--max-iter 200 -o runs/inpaint")
_preset_command("superres", "Super-resolution: PSNR vs the downsampling factor, no GS vs GS vs Lasso-DCT.",
                [click.option("--factors", default=None, help="Comma-separated integer factors  [default: 2,4,8]")],
                lambda kw: {"factors": _ints(kw.pop("factors"))},
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
