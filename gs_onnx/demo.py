"""``gs-demo``: measure a bundled CelebA test face at m/n = 0.163 and recover it without and with surgery.

Prints both PSNRs and writes ``OUT/side_by_side.png`` (truth | c = 0 | c = recommended cut).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from . import registry
from .cli import OneLineCommand, one_line_errors
from .cut import CutGenerator
from .errors import GSError
from .images import grid, load_image, save_png
from .measurement import measure, paper_sigma
from .metrics import psnr
from .operator import GaussianOperator
from .progress import Progress
from .restart import Budget, recover

SAMPLES = Path(__file__).resolve().parent / "samples"


def default_image(size: int) -> Path:
    return SAMPLES / ("celeba64_182638.jpg" if size == 64 else "celeba_aligned_00000.jpg")


@click.command(cls=OneLineCommand)
@click.option("--model", default=registry.default_model, show_default="began, or $GS_ONNX_DEFAULT_MODEL")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Default: a bundled CelebA test face.")
@click.option("--ratio", type=float, default=0.1628, show_default=True, help="m/n")
@click.option("--budget", type=click.Choice(["auto", "quick", "paper"]), default="auto", show_default=True,
              help="quick: 1 restart x 40 L-BFGS-B iterations; paper: 3 restarts x 500; auto: paper for 64 px "
                   "models, quick for larger ones (a 128 px BEGAN evaluation takes ~0.5 s on 2 CPU cores).")
@click.option("--restarts", type=int, default=None, help="Overrides the budget's restarts.")
@click.option("--max-iter", type=int, default=None, help="Overrides the budget's iterations per restart.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="demo-out", show_default=True)
@click.option("--models-dir", type=click.Path(file_okay=False), default=None)
@one_line_errors
def main(model, image, ratio, budget, restarts, max_iter, seed, device, out, models_dir):
    """Recover a face from compressed measurements with c = 0 and with Generator Surgery."""
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
    if budget == "auto":
        budget = "paper" if h <= 64 else "quick"
    opt = man.recommended.get("optimizer", {})
    r0, it0 = (3, int(opt.get("max_iter", 500))) if budget == "paper" else (1, 40)
    restarts = r0 if restarts is None else restarts
    it = it0 if max_iter is None else max_iter
    if restarts < 1 or it < 1:
        raise GSError("--restarts and --max-iter must be >= 1")
    budget = Budget(max_iter=it, max_fun=int(it * 1.25))
    cuts = [0, man.recommended_cut]
    click.echo(f"model {man.name} ({man.architecture}, {h}x{w}), image {img_path.name}, m = {m} "
               f"(m/n = {m / man.n:.4f}), noise sigma {sigma:.3g}, {restarts} restarts x <= {budget.max_iter} "
               f"L-BFGS-B iterations")
    results = {}
    for cut in cuts:
        gen = CutGenerator(man, cut, device)
        bar = Progress(f"c={cut}")
        rec = recover(gen, op, y, restarts=restarts, budget=budget, seed=seed,
                      callback=lambda r, ev: bar.update((r * budget.max_fun + ev) / (restarts * budget.max_fun)))
        bar.close()
        p = psnr(rec.image, x)
        results[cut] = (rec, p)
        click.echo(f"cut {cut} ({gen.size} free values): PSNR {p:.2f} dB, measurement error "
                   f"{rec.measurement_error:.4f}, {rec.seconds:.1f} s on {gen.provider}")
    outd = Path(out)
    outd.mkdir(parents=True, exist_ok=True)
    tiles = [x] + [results[c_][0].image for c_ in cuts]
    if h < 128:  # nearest x2 so that a 64 px result is visible
        tiles = [t.repeat(2, axis=1).repeat(2, axis=2) for t in tiles]
    save_png(grid(tiles, len(tiles), pad=4), outd / "side_by_side.png")
    summary = {"model": man.name, "image": str(img_path), "m": m, "n": man.n, "sigma": sigma,
               "restarts": restarts, "max_iter": budget.max_iter,
               "psnr": {f"cut{c_}": round(results[c_][1], 3) for c_ in cuts},
               "seconds": {f"cut{c_}": round(results[c_][0].seconds, 2) for c_ in cuts},
               "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    (outd / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    gain = results[cuts[1]][1] - results[0][1]
    click.echo(f"surgery (c={cuts[1]}) vs no surgery (c=0): {gain:+.2f} dB; wrote {outd / 'side_by_side.png'} "
               "(truth | c=0 | surgery)")


if __name__ == "__main__":
    main()
