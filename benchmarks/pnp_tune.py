"""Tune and measure the plug-and-play methods on faces measured as ``gs-measure`` would (the experiments' seeds):
operator seed 0, noise seed = the image's index, CelebA train faces for tuning, test faces and COCO photos for
measuring. GS runs once per image through ``gs_onnx.solve.make_solver("gs")`` and its image is cached, so that the
PnP candidates (which only need y, A and G) can be swept quickly; every other method runs through
``make_solver`` as ``gs-recover`` runs it.

    python benchmarks/pnp_tune.py gs --model began --cond cs163 --split train --images 0-2
    python benchmarks/pnp_tune.py sweep --model began --cond cs163 --split train --images 0-2 --what plain
    python benchmarks/pnp_tune.py run --model began --cond mask30 --split test --images 0-4 --methods gs-pnp,pnp,tv

Results append to runs/tune/results.jsonl (one row per image, method and configuration).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("GS_TUNE_DIR", ROOT.parent / "runs" / "tune"))

#: name -> (operator, parameters, ratio for counted operators, noise sigma or None for the operator's default)
CONDITIONS = {
    "cs163": ("gaussian", {}, 0.1628, None),
    "cs049": ("gaussian", {}, 0.0488, None),
    "cs020": ("gaussian", {}, 0.02, None),
    "dct163": ("srdct", {}, 0.1628, None),
    "mask30": ("mask", {"keep": 0.3}, None, None),
    "mask20": ("mask", {"keep": 0.2}, None, None),
    "mask10": ("mask", {"keep": 0.1}, None, None),
    "box": ("box", {"box": "centre", "box_size": 0.5}, None, None),
    "sr4": ("downsample", {"factor": 4}, None, None),
    "fourier25": ("fourier", {"keep": 0.25, "density": "centre"}, None, None),
    "blur2": ("blur", {"sigma": 2.0}, None, None),
    "denoise": ("identity", {}, None, 0.1),
}
SPLITS = {  # (64 px folder, 128 px folder, offset of the first image)
    "train": ("celeba_crops64/train", "celeba_aligned/train", 0),
    "test": ("celeba_crops64/test", "celeba_aligned/test", 0),
    "coco": ("coco/test", "coco/test", 0),
}


def indices(s: str) -> list[int]:
    out = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


_OPS: dict = {}


def problem(model: str, cond: str, split: str, i: int):
    """(manifest, op, x (C, H, W), y (1, m), sigma, image path) of image i of a split under a condition."""
    from gs_onnx.generator.registry import load
    from gs_onnx.io.images import list_images, load_image
    from gs_onnx.physics import make, measure, operator_class, sigma_for

    man = load(model)
    kind, params, ratio, sigma = CONDITIONS[cond]
    shape = tuple(man.image_shape)
    key = (kind, tuple(sorted(params.items())), ratio, shape)
    if key not in _OPS:
        p = dict(params)
        if operator_class(kind).counts_measurements:
            p["m"] = int(round(ratio * int(np.prod(shape))))
        _OPS.clear()  # one dense A in memory at a time
        _OPS[key] = make(kind, shape, 0, **p)
    op = _OPS[key]
    folder = DATA / SPLITS[split][0 if shape[1] == 64 else 1]
    path = list_images(folder)[SPLITS[split][2] + i]
    x = load_image(path, shape[1])
    s = sigma_for("auto", op) if sigma is None else sigma
    y = measure(x.reshape(1, -1), op, s, i)
    return man, op, x, y, s, path


def sidecar(man, op) -> dict:
    return {"operator": op.describe(), "image_shape": list(man.image_shape), "m": op.m, "n": op.n, "model": man.name}


def cache_path(model, cond, split, i) -> Path:
    """The cached GS stage of gs-pnp for an image, keyed by GS's iteration cap (the anchored plan's gs_max_iter)."""
    from gs_onnx.solve.pnp import anchored_plan

    kind = CONDITIONS[cond][0]
    cap = os.environ.get("GS_TUNE_GS_MAX_ITER") or anchored_plan(kind).get("gs_max_iter") or "plan"
    return CACHE / model / cond / f"{split}_{i:04d}_gspnp-stage1_it{cap}.npz"


def run_gs(model, cond, split, i, force=False):
    from gs_onnx.solve import Settings, make_solver

    p = cache_path(model, cond, split, i)
    if p.exists() and not force:
        return dict(np.load(p, allow_pickle=False))
    man, op, x, y, sigma, path = problem(model, cond, split, i)
    t = time.perf_counter()
    # gs-pnp's own GS stage (the rows it holds out are never fitted), without its refinement
    cap = os.environ.get("GS_TUNE_GS_MAX_ITER")
    s = Settings(model=model, seed=i, denoiser=DENOISER, max_iter=int(cap) if cap else None)
    solver = make_solver("gs-pnp", y, sidecar(man, op), s, op=op)
    solver._inner = True
    image, fields = solver.solve(0, y[0], lambda f, w: None)
    seconds = time.perf_counter() - t
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, G=image, x=x, y=y, seconds=seconds, sigma=sigma)
    log({"model": model, "cond": cond, "split": split, "image": i, "method": "gs-stage", "psnr": psnr(image, x),
         "seconds": round(seconds, 2)})
    return dict(np.load(p, allow_pickle=False))


#: The ONNX denoiser the GS stage's solver loads (unused by GS itself): $GS_TUNE_DENOISER or the default.
DENOISER = os.environ.get("GS_TUNE_DENOISER")


def psnr(a, b) -> float:
    from gs_onnx.metrics import psnr as p

    return round(float(p(a, b)), 3)


def log(row: dict) -> None:
    row = {**row, "host": platform.node(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


#: The ONNX denoiser's mirror self-ensemble: $GS_TUNE_FLIP (1 or 0), else the library's default (gs_onnx.solve.pnp.FLIP).
FLIP = {"1": True, "0": False}.get(os.environ.get("GS_TUNE_FLIP", ""))


def denoiser(kind="onnx", name=None):
    from gs_onnx.solve.priors import denoiser_for

    return denoiser_for(kind, name, "cpu", 0, flip=FLIP if kind == "onnx" else None)


def denoiser_tag(method: str, name: str | None = None) -> dict:
    """Which ONNX denoiser a row's method ran with (the first 12 hex digits of its manifest's sha256), so that rows
    of a re-trained denoiser are told from the old ones."""
    from gs_onnx.solve import registry

    if method not in ("pnp", "gs-pnp") and "denoiser" not in registry.method(method).settings:
        return {}
    import hashlib

    from gs_onnx.generator.denoiser import find_denoiser

    man = find_denoiser(name)
    return {"denoiser_sha": hashlib.sha256((man.root / "manifest.json").read_bytes()).hexdigest()[:12]}


def sweep(a):
    """PnP candidates on cached GS images: plain PnP over a grid of schedules, anchored PnP over schedules and
    weights, and the held-out choice; mean PSNR per configuration."""
    from gs_onnx.solve.lasso import lipschitz
    from gs_onnx.solve.pnp import HOLDOUT, PATIENCE, Schedule, pnp_batch
    from gs_onnx.solve.stopping import holdout_mask

    den = denoiser(a.denoiser_kind, a.denoiser)
    imgs = indices(a.images)
    probs = []
    for i in imgs:
        c = run_gs(a.model, a.cond, a.split, i)
        man, op, x, y, sigma, _ = problem(a.model, a.cond, a.split, i)
        probs.append((i, op, c["x"], c["y"], c["G"]))
    op = probs[0][1]
    L = lipschitz(op)
    shape = probs[0][2].shape
    Y = np.concatenate([p[3] for p in probs])
    X = np.stack([p[2] for p in probs])
    G = np.stack([p[4] for p in probs])
    W = np.stack([holdout_mask(op.m, HOLDOUT, i) for i in imgs])
    iters = [int(v) for v in a.iters.split(",")]
    smax = [float(v) for v in a.smax.split(",")]
    smin = [float(v) for v in a.smin.split(",")]
    gammas = [float(v) for v in a.gammas.split(",")]
    for it, s1, s0, st in itertools.product(iters, smax, smin, [float(v) for v in str(a.step).split(",")]):
        if s0 > s1:
            continue
        t = time.perf_counter()
        if a.what == "plain":
            res = pnp_batch(op, Y, shape, den, Schedule(it, s1, s0), w=W, lipschitz=L, step=st,
                            patience=PATIENCE, momentum=not a.no_momentum)
            ps = [psnr(r.image, X[j]) for j, r in enumerate(res)]
            extra = {"best_iteration": [r.best_iteration for r in res]}
            if getattr(op, "block_period", None):   # x4: the 4-px boundary statistic, and the truth's
                from gs_onnx.metrics import seam

                extra["blocks"] = [round(float(seam(r.image, op.block_period)), 4) for r in res]
                extra["blocks_truth"] = [round(float(seam(X[j], op.block_period)), 4) for j in range(len(res))]
        else:
            B = len(imgs)
            rows = [(j, g) for j in range(B) for g in gammas]
            res = pnp_batch(op, Y[[j for j, _ in rows]], shape, den, Schedule(it, s1, s0), x0=G[[j for j, _ in rows]],
                            anchor=G[[j for j, _ in rows]], gamma=np.array([g for _, g in rows]),
                            w=W[[j for j, _ in rows]], lipschitz=L, step=st, patience=PATIENCE)
            ps = {f"{g:g}": [psnr(res[j * len(gammas) + k].image, X[j]) for j in range(B)]
                  for k, g in enumerate(gammas)}
            extra = {"gs": [psnr(G[j], X[j]) for j in range(B)]}
        log({"model": a.model, "cond": a.cond, "split": a.split, "images": imgs, "method": f"sweep-{a.what}",
             "denoiser": a.denoiser_kind, "step": st, "momentum": not a.no_momentum, "iterations": it, "sigma_max": s1,
             "sigma_min": s0, "psnr": ps,
             "mean": float(np.mean(ps)) if isinstance(ps, list) else {k: float(np.mean(v)) for k, v in ps.items()},
             "seconds": round(time.perf_counter() - t, 1), **extra,
             **(denoiser_tag("pnp", a.denoiser) if a.denoiser_kind == "onnx" else {})})


def run_methods(a):
    """Methods end to end on each image (GS from the cache for gs-pnp's refinement: the same GS run)."""
    from gs_onnx.solve import Settings, make_solver
    from gs_onnx.solve.lasso import lipschitz
    from gs_onnx.solve.methods.gs_pnp import refine
    from gs_onnx.solve.pnp import anchored_plan
    from gs_onnx.solve.pnp import (HOLDOUT, PATIENCE, noise_level, plan_for, polish_for, polish_kernel,
                                   polish_sigma_for, wants_noise)
    from gs_onnx.solve.priors import classical_candidates
    from gs_onnx.solve.stopping import holdout_mask

    from gs_onnx.solve import registry

    methods = a.methods.split(",")
    if a.batch:  # the batched methods (but gs-pnp, whose GS stage is cached) solve every image in one chunk
        together = [m for m in methods if m != "gs-pnp" and registry.method(m).batched]
        methods = [m for m in methods if m not in together]
        for method in together:
            run_together(a, method)
    for i in indices(a.images):
        man, op, x, y, sigma, path = problem(a.model, a.cond, a.split, i)
        for method in methods:
            t = time.perf_counter()
            extra = {}
            if method == "gs-pnp":  # the method's refinement on the cached GS image; seconds: GS's + this
                c = run_gs(a.model, a.cond, a.split, i)
                kind = op.describe()["type"]
                W = holdout_mask(op.m, HOLDOUT, i)[None]
                (image,), (info,) = refine(op, y, c["G"][None], W, denoiser(), plan_for("onnx", kind),
                                           anchored_plan(kind), lipschitz(op), PATIENCE, polish_for(kind),
                                           polish_sigma_for(kind, noise_level({"sigma": sigma}, y[0], op)
                                                            if wants_noise(kind) else None), polish_kernel(op),
                                           classical_candidates(kind, "cpu", 0))
                seconds = float(c["seconds"]) + time.perf_counter() - t
                extra = {"chosen": info["chosen"], "gs_psnr": psnr(c["G"], x)}
            else:
                s = Settings(seed=i)
                if "model" in registry.method(method).settings:
                    s.model = a.model
                solver = make_solver(method, y, sidecar(man, op), s, op=op)
                image, fields = solver.solve(0, y[0], lambda f, w: None)
                seconds = time.perf_counter() - t
            log_image(a, i, method, man, op, x, image, seconds, extra)


def log_image(a, i, method, man, op, x, image, seconds, extra) -> None:
    from gs_onnx.metrics import seam

    for key, period in (("blocks", getattr(op, "block_period", None)), ("seam", man.lattice_cell)):
        if period:
            extra[key] = round(float(seam(image, period)), 4)
            extra[key + "_truth"] = round(float(seam(x, period)), 4)
    log({"model": a.model, "cond": a.cond, "split": a.split, "image": i, "method": method,
         "psnr": psnr(image, x), "seconds": round(seconds, 2), **extra, **denoiser_tag(method)})


def run_together(a, method: str) -> None:
    """One batched method on every image of ``--images`` in one chunk (one read of a dense A serves them all, as
    ``gs-recover`` on a file of several images); seconds: the chunk's, divided by its images."""
    from gs_onnx.solve import Settings, make_solver, registry
    from gs_onnx.solve.registry import solve_many

    ids = indices(a.images)
    probs = [problem(a.model, a.cond, a.split, i) for i in ids]
    man, op = probs[0][0], probs[0][1]
    Y = np.concatenate([p[3] for p in probs]).astype(np.float32)
    s = Settings(seed=ids[0], batch_size=len(ids))
    if "model" in registry.method(method).settings:
        s.model = a.model
    t = time.perf_counter()
    solver = make_solver(method, Y, sidecar(man, op), s, op=op)
    results = solve_many(solver, ids[0], Y, lambda j, f, w: None)
    seconds = (time.perf_counter() - t) / len(ids)
    for i, p, (image, _fields) in zip(ids, probs, results):
        log_image(a, i, method, man, op, p[2], image, seconds, {"batched": len(ids)})


def table(a):
    """Mean PSNR per (model, condition) and method of the ``run`` rows of results.jsonl for a split: a markdown
    table over the images the first method ran on (n); a method not run on all of them shows "-"."""
    rows = [json.loads(l) for l in open(CACHE / "results.jsonl") if l.strip()]
    rows = [r for r in rows if r.get("split") == a.split and "image" in r and not str(r["method"]).startswith("sweep")
            and (a.model == "all" or r["model"] == a.model)]
    methods = a.methods.split(",")
    latest: dict = {}
    for r in rows:  # the latest row of each (model, cond, image, method)
        latest[(r["model"], r["cond"], r["image"], r["method"])] = r
    conds = sorted({(m, c) for m, c, _, _ in latest}, key=lambda mc: (mc[0], list(CONDITIONS).index(mc[1])))
    print("| model | condition | n | " + " | ".join(methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for model, cond in conds:
        imgs = sorted({i for (m, c, i, meth) in latest if (m, c) == (model, cond) and meth == methods[0]})
        if not imgs:
            continue
        means = {meth: float(np.mean([latest[(model, cond, i, meth)]["psnr"] for i in imgs])) for meth in methods
                 if all((model, cond, i, meth) in latest for i in imgs)}   # a method not run on every image: "-"
        top = max(means.values())
        cells = [("-" if meth not in means else f"**{means[meth]:.2f}**" if means[meth] == top else f"{means[meth]:.2f}")
                 for meth in methods]
        print(f"| {model} | {cond} | {len(imgs)} | " + " | ".join(cells) + " |")


def best(a):
    """The configuration of highest mean PSNR among the sweeps logged for a model, condition and kind (plain or
    anchored, per denoiser): what the plans in gs_onnx.solve.pnp and gs_pnp were set from."""
    rows = [json.loads(l) for l in open(CACHE / "results.jsonl") if l.strip()]
    rows = [r for r in rows if r.get("method") == f"sweep-{a.what}" and r["model"] == a.model and r["cond"] == a.cond
            and r.get("denoiser", "onnx") == a.denoiser_kind and r.get("split") == "train"]
    if not rows:
        print("no sweeps logged")
        return
    def score(r):
        m = r["mean"]
        return max(m.values()) if isinstance(m, dict) else m
    top = sorted(rows, key=score, reverse=True)[:5]
    for r in top:
        m = r["mean"]
        g = max(m, key=m.get) if isinstance(m, dict) else None
        print(json.dumps({"iterations": r["iterations"], "sigma_max": r["sigma_max"], "sigma_min": r["sigma_min"],
                          "step": r.get("step", 1.0), **({"gamma": float(g)} if g else {}), "mean": round(score(r), 3),
                          "gs": round(float(np.mean(r["gs"])), 3) if r.get("gs") else None}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["gs", "sweep", "run", "table", "best"])
    ap.add_argument("--model", default="began")
    ap.add_argument("--cond", default="cs163")
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", default="0-2")
    ap.add_argument("--methods", default="gs-pnp,pnp")
    ap.add_argument("--what", default="plain", choices=["plain", "anchored"])
    ap.add_argument("--iters", default="20,40")
    ap.add_argument("--smax", default="0.05,0.1,0.2")
    ap.add_argument("--smin", default="0.005,0.01,0.02")
    ap.add_argument("--gammas", default="0.1,0.3,1,3")
    ap.add_argument("--denoiser", default=None)
    ap.add_argument("--step", default="1", help="the gradient step(s) times 1 / ||A||^2, comma-separated")
    ap.add_argument("--no-momentum", action="store_true")
    ap.add_argument("--denoiser-kind", default="onnx")
    ap.add_argument("--batch", action="store_true", help="run: the batched methods but gs-pnp solve all images at once")
    a = ap.parse_args()
    if a.stage == "gs":
        for i in indices(a.images):
            run_gs(a.model, a.cond, a.split, i)
    elif a.stage == "sweep":
        sweep(a)
    elif a.stage == "table":
        table(a)
    elif a.stage == "best":
        best(a)
    else:
        run_methods(a)


if __name__ == "__main__":
    sys.exit(main())
