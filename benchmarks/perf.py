"""The performance suite: runtime vs torch eager, batching, operators, memory, FLOP/s. Writes docs/benchmarks.md.

    python benchmarks/perf.py                    # CPU, all sections (about 15 minutes on 2 cores)
    python benchmarks/perf.py --device cuda      # the same on a GPU machine (onnxruntime-gpu + CUDA torch)
    python benchmarks/perf.py --only eval,ops --out /tmp/bench.md

Every ratio compares the same computation measured side by side in one run on one machine:

* ``eval``: one objective + gradient evaluation f(z) = ||A G_c(z) - y||^2 / m, df/dz for K latents at once
  (K = 1, 3, 8, 32), gs-onnx runtime (forward + VJP graphs on ONNX Runtime, A on numpy BLAS) vs torch eager
  (the same generator rebuilt from the model's ONNX weights, autograd, A as a torch tensor), DCGAN c=1,
  BEGAN c=2, VAE c=1, dense Gaussian A at m/n = 0.1628. Each model runs in its own subprocess, whose peak
  resident memory is reported.
* ``cpu``: the CPU path: default sessions vs one thread vs spinning threads vs the tail merged into one
  forward and one VJP graph.
* ``restarts``: one recovery with 1 restart, 3 restarts one after another, and 3 restarts batched
  (:func:`gs_onnx.restart.recover` with ``batch=True``), the same fixed budget.
* ``ops``: applying A and A^T, dense Gaussian vs subsampled randomized DCT, 64 and 128 px, with memory.
* ``psnr``: GS recovery PSNR with dense vs structured A on the same images (VAE c=1, 128 px).
* ``big``: BEGAN 128 px at m/n = 0.49 with dense A (4.7 GB): three evaluations and the peak memory.
* ``flops``: achieved FLOP/s of the tail forward + VJP (FLOPs counted by torch's FlopCounterMode on the same
  computation) against a large float32 matrix multiply on the same machine.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP threads must not spin against ORT's

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [("dcgan", 1), ("began", 2), ("vae", 1)]
RATIO = 0.1628


def hardware(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: KiB


def timed(fn, min_repeats: int = 3, min_seconds: float = 1.5, warmup: int = 1) -> float:
    """Median seconds of fn() over at least min_repeats calls and min_seconds."""
    for _ in range(warmup):
        fn()
    ts, t_all = [], time.perf_counter()
    while len(ts) < min_repeats or time.perf_counter() - t_all < min_seconds:
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
        if len(ts) >= 50:
            break
    return float(np.median(ts))


def timed_pair(fa, fb, min_pairs: int = 5, min_seconds: float = 3.0) -> tuple[float, float, float]:
    """Interleaved timing of two functions (a, b, a, b, ...): medians of each and the median of the
    per-pair ratios a/b, so that a slow stretch of a shared machine hits both sides alike."""
    fa(), fb()
    ta, tb, t_all = [], [], time.perf_counter()
    while len(ta) < min_pairs or time.perf_counter() - t_all < min_seconds:
        for fn, ts in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        if len(ta) >= 60:
            break
    return float(np.median(ta)), float(np.median(tb)), float(np.median(np.array(ta) / np.array(tb)))


def setup(model: str, cut: int, ratio: float, device: str, operator: str = "gaussian"):
    from gs_onnx import registry
    from gs_onnx.cut import CutGenerator
    from gs_onnx.objective import Objective
    from gs_onnx.operator import make_operator

    man = registry.load(model)
    m = int(round(ratio * man.n))
    op = make_operator(operator, m, man.n, 0)
    y = op.forward(np.random.default_rng(0).random((1, man.n), dtype=np.float32))[0]
    return man, op, y, Objective(CutGenerator(man, cut, device), op, y)


# -------------------------------------------------------------------------------------------- eval

def eval_child(model: str, cut: int, device: str, batches: list[int]) -> dict:
    import torch

    from gs_export.from_onnx import torch_generator
    from gs_export.reference import TorchObjective
    from gs_onnx.latent import init_latent

    man, op, y, obj = setup(model, cut, RATIO, device)
    tdev = "cuda" if device == "cuda" else "cpu"
    tobj = TorchObjective(torch_generator(man), cut, op, y, man.to_unit(), device=tdev)
    rows = []
    for k in batches:
        Z = init_latent("cn01", obj.layout.size, np.random.default_rng(k), batch=k)
        def t_eval():
            tobj.value_and_grad_batch(Z)
            if tdev == "cuda":
                torch.cuda.synchronize()

        t_rt, t_t, ratio = timed_pair(lambda: obj.value_and_grad_batch(Z), t_eval)
        rows.append({"batch": k, "runtime_ms": 1e3 * t_rt, "torch_ms": 1e3 * t_t, "ratio": ratio})
    return {"model": model, "cut": cut, "m": op.m, "free_values": obj.layout.size, "provider": obj.gen.provider,
            "torch": f"{torch.__version__}, {torch.get_num_threads()} threads", "rows": rows,
            "peak_rss_gb": peak_rss_gb()}


def flops_child(model: str, cut: int, device: str) -> dict:
    """FLOPs of one evaluation (batch 1) by torch's counter; runtime time of the same evaluation."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gs_export.from_onnx import torch_generator
    from gs_export.reference import TorchObjective
    from gs_onnx.latent import init_latent

    man, op, y, obj = setup(model, cut, RATIO, device)
    tobj = TorchObjective(torch_generator(man), cut, op, y, man.to_unit())
    Z = init_latent("cn01", obj.layout.size, np.random.default_rng(0), batch=1)
    zs = tobj._tensors(Z, True)
    with FlopCounterMode(display=False) as fc:  # .backward(): the counter does not support autograd.grad
        r = tobj._apply(tobj._x01(zs)) - tobj.y
        ((r * r).sum() / tobj.m).backward()
    total = fc.get_total_flops()
    a_flops = 2 * 2 * op.m * op.n  # A x and A^T r
    gen_flops = total - a_flops
    t_gen = timed(lambda: obj.gen.vjp(obj.gen.forward(obj.layout.unpack(Z), keep=True)[1],
                                      np.ones((1, *man.image_shape), np.float32)))
    return {"model": model, "cut": cut, "gflop": gen_flops / 1e9, "tail_ms": 1e3 * t_gen,
            "gflops_per_s": gen_flops / t_gen / 1e9}


def matmul_gflops(n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    t = timed(lambda: a @ b, min_repeats=5)
    return 2 * n ** 3 / t / 1e9


# --------------------------------------------------------------------------------------- CPU path

def cpu_child(model: str, cut: int, device: str) -> dict:
    """One evaluation (batch 1) under the CPU-path variants: default, 1 thread, spinning on, per-block
    sessions, the merged tail."""
    from gs_onnx.latent import init_latent

    man, op, y, obj = setup(model, cut, RATIO, device)
    z = init_latent("cn01", obj.layout.size, np.random.default_rng(0))[0]
    from gs_onnx.cut import CutGenerator
    from gs_onnx.objective import Objective

    # every variant is timed alternately with the default (obj); "default" is the median of those runs
    default = lambda: obj.value_and_grad(z)  # noqa: E731
    out = {"model": model, "cut": cut}
    o1 = Objective(CutGenerator(man, cut, device, threads=1), op, y)
    t_d1, t_1, _ = timed_pair(default, lambda: o1.value_and_grad(z))
    out["one_thread_ms"] = 1e3 * t_1
    import gs_onnx.providers as prov

    orig = prov.session_options

    def spinning(threads=0):
        so = orig(threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return so

    prov.session_options = spinning
    try:
        o2 = Objective(CutGenerator(man, cut, device), op, y)
    finally:
        prov.session_options = orig
    t_d2, t_s, _ = timed_pair(default, lambda: o2.value_and_grad(z))
    out["spinning_ms"] = 1e3 * t_s
    # merged: the tail's forward graphs as one session, its VJP graphs as another (gs_onnx.merge)
    # against the default's per-block sessions (obj), interleaved so both see the same machine
    om = Objective(CutGenerator(man, cut, device, merged=True), op, y)
    assert not obj.gen.merged
    g_ref, g_m = obj.value_and_grad(z)[1], om.value_and_grad(z)[1]
    assert np.linalg.norm(g_m - g_ref) <= 1e-4 * np.linalg.norm(g_ref), "merged graphs disagree"
    t_c, t_m, _ = timed_pair(default, lambda: om.value_and_grad(z))
    out["chained_ms"], out["merged_ms"] = 1e3 * t_c, 1e3 * t_m
    out["default_ms"] = 1e3 * float(np.median([t_d1, t_d2, t_c]))
    return out


# ---------------------------------------------------------------------------------------- restarts

def restarts_child(model: str, cut: int, device: str) -> dict:
    from gs_onnx.restart import Budget, recover

    man, op, y, obj = setup(model, cut, RATIO, device)
    its = 40 if model == "dcgan" else 6
    b = Budget(max_iter=its, max_fun=its, ftol=0.0, gtol=0.0)  # a fixed amount of work
    out = {"model": model, "cut": cut, "budget": f"{its} iterations / {its} evaluations per restart"}
    for name, kw in (("one", {"restarts": 1}), ("three_sequential", {"restarts": 3}),
                     ("three_batched", {"restarts": 3, "batch": True})):
        t = time.perf_counter()
        r = recover(obj.gen, op, y, budget=b, seed=0, **kw)
        out[name] = {"seconds": time.perf_counter() - t, "evaluations": r.evaluations,
                     "objective": r.objective}
    return out


# --------------------------------------------------------------------------------------- operators

def ops_section() -> list[dict]:
    from gs_onnx.operator import GaussianOperator, SubsampledDCTOperator

    rows = []
    for n, ratio in ((12288, 0.1628), (49152, 0.1628), (49152, 0.49)):
        m = int(round(ratio * n))
        rng = np.random.default_rng(0)
        x = rng.random((1, n), dtype=np.float32)
        r = rng.standard_normal((1, m)).astype(np.float32)
        row = {"n": n, "m": m}
        for name, op in (("dense", GaussianOperator(m, n, 0)), ("srdct", SubsampledDCTOperator(m, n, 0))):
            t0 = time.perf_counter()
            op.forward(x)  # builds the dense matrix on first use
            row[f"{name}_setup_s"] = time.perf_counter() - t0
            row[f"{name}_ms"] = 1e3 * timed(lambda: op.adjoint(op.forward(x)), min_repeats=5)
            row[f"{name}_bytes"] = op.nbytes
            del op
        row["speedup"] = row["dense_ms"] / row["srdct_ms"]
        rows.append(row)
    return rows


def psnr_child(model: str, cut: int, n_images: int, its: int, device: str) -> dict:
    from gs_onnx import registry
    from gs_onnx.cut import CutGenerator
    from gs_onnx.images import list_images, load_image
    from gs_onnx.measurement import measure, paper_sigma
    from gs_onnx.metrics import psnr
    from gs_onnx.operator import make_operator
    from gs_onnx.restart import Budget, recover

    man = registry.load(model)
    gen = CutGenerator(man, cut, device)
    folder = "celeba_crops64" if man.image_shape[1] == 64 else "celeba_aligned"
    files = list_images(ROOT.parent / "shared" / "data" / folder / "test")[:n_images]
    xs = np.stack([load_image(p, man.image_shape[1]).reshape(-1) for p in files])
    out = {"model": model, "cut": cut, "images": len(files), "folder": f"{folder}/test",
           "budget": f"1 restart, {its} iterations"}
    for ratio in (0.0488, 0.1628):
        m = int(round(ratio * man.n))
        for kind in ("gaussian", "srdct"):
            op = make_operator(kind, m, man.n, 0)
            ys = measure(xs, op, paper_sigma(man.n, m), 0)
            ps, t = [], time.perf_counter()
            for i in range(len(files)):
                rec = recover(gen, op, ys[i], restarts=1, budget=Budget(max_iter=its, max_fun=int(its * 1.25)),
                              seed=i)
                ps.append(psnr(rec.image, xs[i].reshape(man.image_shape)))
            out[f"{ratio:g}_{kind}"] = {"psnr": float(np.mean(ps)), "std": float(np.std(ps)),
                                        "s_per_image": (time.perf_counter() - t) / len(files), "all": ps}
    return out


def big_child(device: str) -> dict:
    from gs_onnx.latent import init_latent

    t = time.perf_counter()
    man, op, y, obj = setup("began", 2, 0.49, device)
    setup_s = time.perf_counter() - t
    z = init_latent("cn01", obj.layout.size, np.random.default_rng(0))[0]
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        obj.value_and_grad(z)
        ts.append(time.perf_counter() - t)
    return {"m": op.m, "n": op.n, "a_gb": op.nbytes / 1e9, "setup_s": setup_s, "eval_s": float(np.median(ts)),
            "peak_rss_gb": peak_rss_gb()}


# ------------------------------------------------------------------------------------------- driver

def child(args: list[str]) -> dict:
    """Run one section in a fresh interpreter (own peak memory, no state shared with the others)."""
    p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if p.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_child(argv: list[str]) -> None:
    kind, *rest = argv
    dev = rest[-1]
    if kind == "eval":
        res = eval_child(rest[0], int(rest[1]), dev, [int(b) for b in rest[2].split(",")])
    elif kind == "flops":
        res = flops_child(rest[0], int(rest[1]), dev)
    elif kind == "cpu":
        res = cpu_child(rest[0], int(rest[1]), dev)
    elif kind == "restarts":
        res = restarts_child(rest[0], int(rest[1]), dev)
    elif kind == "psnr":
        res = psnr_child(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), dev)
    elif kind == "big":
        res = big_child(dev)
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(res))


def write_doc(res: dict, out: Path) -> None:
    L = ["# Benchmarks", "",
         f"Measured {res['date']} with `python benchmarks/perf.py` on **{res['hardware']}** "
         f"({res['device']}; onnxruntime {res['onnxruntime']}, torch {res['torch']}, numpy {res['numpy']}). "
         "Every ratio compares the same computation measured side by side in one run. Re-run the script to "
         "regenerate this page on your machine.", ""]
    if res.get("notes"):
        L += ["What the numbers say:", "", res["notes"], ""]
    if "eval" in res:
        L += ["## One objective + gradient evaluation: runtime vs torch eager", "",
              f"f(z) = ||A G_c(z) - y||^2 / m and df/dz for K latents in one batch (restarts or images), dense "
              f"Gaussian A at m/n = {RATIO}. Runtime: the exported forward + VJP graphs on ONNX Runtime, A on "
              "numpy BLAS. Torch: the same generator rebuilt from the model's ONNX weights, eager autograd, "
              "A as a torch tensor. Runtime and torch calls alternate (a, b, a, b, ... for at least 3 s); times are medians, the ratio is the median of the per-pair ratios; ratio < 1 means the runtime is faster. Peak memory is the whole "
              "process (both sides, A included).", "",
              "| model | cut | free values | m | K | runtime ms | torch ms | ratio | runtime ms per latent | peak RSS GB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for e in res["eval"]:
            for r in e["rows"]:
                L.append(f"| {e['model']} | {e['cut']} | {e['free_values']} | {e['m']} | {r['batch']} | "
                         f"{r['runtime_ms']:.1f} | {r['torch_ms']:.1f} | {r['ratio']:.2f} | "
                         f"{r['runtime_ms'] / r['batch']:.1f} | {e['peak_rss_gb']:.2f} |")
        L += ["", f"Providers: {', '.join(sorted({e['provider'] for e in res['eval']}))}; torch "
              f"{res['eval'][0]['torch']}.", ""]
    if "cpu" in res:
        L += ["## CPU path variants", "",
              "One objective + gradient evaluation at batch 1 (ms), all through the same `Objective`. Each "
              "variant is timed alternately with the runtime's default (two sessions per block, all cores, no "
              "spinning): one intra-op thread, spinning threads, and the tail merged into one forward and one "
              "VJP session (`gs_onnx.merge`; checked to give the same gradient). `default` is the median of "
              "the default's three paired runs, `chained blocks` its run paired with the merged tail.", "",
              "| model | cut | default | 1 thread | spinning | chained blocks | merged tail |",
              "|---|---|---|---|---|---|---|"]
        for c in res["cpu"]:
            L.append(f"| {c['model']} | {c['cut']} | {c['default_ms']:.1f} | {c['one_thread_ms']:.1f} | "
                     f"{c['spinning_ms']:.1f} | {c.get('chained_ms', float('nan')):.1f} | {c['merged_ms']:.1f} |")
        L.append("")
    if "restarts" in res:
        L += ["## Batched restarts", "",
              "One recovery (same image, seeds and a fixed budget: no early stop) with one restart, three "
              "restarts one after another, and three restarts batched: each restart keeps its own scipy "
              "L-BFGS-B state, their evaluations go through the graphs as one batch.", "",
              "| model | cut | budget | 1 restart s | 3 sequential s | 3 batched s | batched / one | "
              "batched / sequential |", "|---|---|---|---|---|---|---|---|"]
        for e in res["restarts"]:
            o, s, b = e["one"]["seconds"], e["three_sequential"]["seconds"], e["three_batched"]["seconds"]
            L.append(f"| {e['model']} | {e['cut']} | {e['budget']} | {o:.2f} | {s:.2f} | {b:.2f} | "
                     f"{b / o:.2f} | {b / s:.2f} |")
        L.append("")
    if "ops" in res:
        L += ["## Measurement operators: dense Gaussian vs subsampled randomized DCT", "",
              "Time of one A x plus one A^T r (batch 1), and the memory the operator holds.", "",
              "| n | m (m/n) | dense ms | dense memory | dense build s | srdct ms | srdct memory | speedup |",
              "|---|---|---|---|---|---|---|---|"]
        for r in res["ops"]:
            L.append(f"| {r['n']} | {r['m']} ({r['m'] / r['n']:.3f}) | {r['dense_ms']:.2f} | "
                     f"{r['dense_bytes'] / 1e9:.2f} GB | {r['dense_setup_s']:.1f} | {r['srdct_ms']:.2f} | "
                     f"{r['srdct_bytes'] / 1e3:.0f} kB | {r['speedup']:.0f}x |")
        L.append("")
    if "psnr" in res:
        p = res["psnr"]
        L += ["## Recovery quality: dense vs structured A", "",
              f"GS recovery of the first {p['images']} faces of {p.get('folder', 'the CelebA test split')} with "
              f"{p['model']} c={p['cut']} ({p['budget']}), paper noise, the same images and seeds for both "
              "operators. The difference is per image (srdct - dense), mean +- std.", "",
              "| m/n | dense PSNR dB | srdct PSNR dB | srdct - dense | srdct better | dense s/image | srdct s/image |",
              "|---|---|---|---|---|---|---|"]
        for ratio in ("0.0488", "0.1628"):
            g, s = p[f"{ratio}_gaussian"], p[f"{ratio}_srdct"]
            d = np.asarray(s["all"]) - np.asarray(g["all"])
            L.append(f"| {ratio} | {g['psnr']:.2f} +- {g['std']:.2f} | {s['psnr']:.2f} +- {s['std']:.2f} | "
                     f"{d.mean():+.2f} +- {d.std():.2f} | {int((d > 0).sum())}/{d.size} | "
                     f"{g['s_per_image']:.1f} | {s['s_per_image']:.1f} |")
        L.append("")
    if "big" in res:
        b = res["big"]
        L += ["## BEGAN at m/n = 0.49 with dense A", "",
              f"m = {b['m']}, n = {b['n']}: A takes {b['a_gb']:.2f} GB (built in {b['setup_s']:.0f} s, "
              f"checked against the available memory before allocation). One evaluation: {b['eval_s']:.2f} s. "
              f"Peak resident memory of the whole process: {b['peak_rss_gb']:.2f} GB.", ""]
    if "flops" in res:
        L += ["## Achieved FLOP/s", "",
              "Generator FLOPs of one evaluation (tail forward + input gradient, batch 1), counted by torch's "
              "FlopCounterMode on the torch reference; divided by the runtime's time for its tail forward + "
              "VJP graphs (A excluded). "
              f"Reference: a 2048 x 2048 float32 matrix multiply in numpy reaches {res['matmul_gflops']:.0f} "
              "GFLOP/s on the same machine.", "",
              "| model | cut | GFLOP / evaluation | runtime tail ms | GFLOP/s | share of matmul |",
              "|---|---|---|---|---|---|"]
        for f in res["flops"]:
            L.append(f"| {f['model']} | {f['cut']} | {f['gflop']:.3f} | {f['tail_ms']:.1f} | "
                     f"{f['gflops_per_s']:.1f} | {f['gflops_per_s'] / res['matmul_gflops']:.0%} |")
        L.append("")
    out.write_text("\n".join(L))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", default="eval,cpu,restarts,ops,psnr,big,flops")
    ap.add_argument("--models", default="dcgan:1,began:2,vae:1", help="model:cut pairs")
    ap.add_argument("--psnr-images", type=int, default=5)
    ap.add_argument("--psnr-iters", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--json", default=None, help="Also write the raw results here.")
    ap.add_argument("--notes", default=None, help="A file whose text goes under the page's introduction.")
    ap.add_argument("--update", action="store_true",
                    help="Start from the results in --json and replace only the sections run (--only).")
    a = ap.parse_args()
    import numpy
    import onnxruntime
    import torch

    only = a.only.split(",")
    global CONFIGS
    CONFIGS = [(mc.split(":")[0], int(mc.split(":")[1])) for mc in a.models.split(",")]
    res = {}
    if a.update:
        if not (a.json and Path(a.json).is_file()):
            raise SystemExit("--update needs an existing --json file")
        res = json.loads(Path(a.json).read_text())
        res.pop("notes", None)
    res.update({"date": time.strftime("%Y-%m-%d"), "hardware": hardware(a.device), "device": a.device,
                "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "numpy": numpy.__version__})
    for kind in ("eval", "cpu", "restarts"):
        if kind not in only or (kind == "cpu" and a.device != "cpu"):
            continue
        res[kind] = []
        for model, cut in CONFIGS:
            print(f"{kind} {model} c={cut}", flush=True)
            extra = [("1,3,8,32" if model == "dcgan" or a.device == "cuda" else "1,3,8")] if kind == "eval" else []
            res[kind].append(child([kind, model, str(cut), *extra, a.device]))
    if "ops" in only:
        print("ops", flush=True)
        res["ops"] = ops_section()
    if "psnr" in only:
        print("psnr", flush=True)
        res["psnr"] = child(["psnr", "vae", "1", str(a.psnr_images), str(a.psnr_iters), a.device])
    if "big" in only:
        print("big", flush=True)
        res["big"] = child(["big", a.device])
    if "flops" in only:
        print("flops", flush=True)
        res["matmul_gflops"] = matmul_gflops()
        res["flops"] = [child(["flops", model, str(cut), a.device]) for model, cut in CONFIGS]
    if a.notes:
        res["notes"] = Path(a.notes).read_text().strip()
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    write_doc(res, Path(a.out))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_child(sys.argv[2:])
    else:
        main()
