"""The performance suite: runtime vs torch eager, batching, the optimiser, operators, memory, FLOP/s. Writes
docs/benchmarks.md.

    python benchmarks/perf.py                    # CPU, all sections (about 20 minutes on 2 cores)
    python benchmarks/perf.py --device cuda      # the same on a GPU machine (onnxruntime-gpu + CUDA torch)
    python benchmarks/perf.py --only eval,ops --out /tmp/bench.md

Every ratio compares the same computation measured side by side in one run on one machine:

* ``eval``: one objective + gradient evaluation f(z) = ||A G_c(z) - y||^2 / m, df/dz for K latents at once,
  every engine variant (the composed default, the operator forced into the graph or onto the host, the
  per-block reference; on CUDA also without IOBinding and with CUDA graphs) and torch eager (the same
  generator rebuilt from the model's ONNX weights, autograd, A as a torch tensor), interleaved, DCGAN c=1,
  BEGAN c=2, VAE c=1 at m/n = 0.1628. Each model runs in its own subprocess, whose peak memory is reported.
* ``optimizer``: scipy L-BFGS-B's own time per iteration inside a recovery (wall time minus evaluations).
* ``cpu``: the CPU path: the default vs one thread vs spinning threads vs a dynamic batch axis.
* ``restarts``: two images x 3 restarts at a fixed budget under each batch mode (none, restarts, images).
* ``dataterm``: the data term and its gradient with the dense Gaussian, one pass over A or two, per batch size.
* ``ops``: applying A and A^T, dense Gaussian vs subsampled randomized DCT, 64 and 128 px, with memory.
* ``psnr``: GS recovery PSNR with dense vs structured A on the same images (VAE c=1, 128 px).
* ``big``: BEGAN 128 px at m/n = 0.49 with dense A (4.7 GB): three evaluations and the peak memory.
* ``flops``: achieved FLOP/s of the tail forward + VJP (FLOPs counted by torch's FlopCounterMode on the same
  computation) against a large matrix multiply on the same device (fp32; on CUDA also tf32 and bf16).
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


def timed_group(fns: dict, reference: str, min_rounds: int = 5, min_seconds: float = 3.0,
                max_rounds: int = 60) -> tuple[dict, dict]:
    """Interleaved timing of several functions (a, b, c, a, b, c, ...): the median seconds of each and the
    median over rounds of each one's ratio to ``reference``, so that a slow stretch hits all alike."""
    for fn in fns.values():
        fn()
    ts = {k: [] for k in fns}
    t_all = time.perf_counter()
    while len(ts[reference]) < min_rounds or time.perf_counter() - t_all < min_seconds:
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
        if len(ts[reference]) >= max_rounds:
            break
    ref = np.array(ts[reference])
    return ({k: float(np.median(v)) for k, v in ts.items()},
            {k: float(np.median(np.array(v) / ref)) for k, v in ts.items()})


#: Engine variants timed by the eval section: name -> (engine, options) for gs_onnx.solve.objective.make_objective.
def variants(device: str, operator: str = "gaussian") -> dict[str, tuple[str, dict]]:
    v = {"composed": ("composed", {}), "blocks": ("blocks", {})}
    v["composed-graph"] = ("composed", {"operator_on": "graph"})
    v["composed-host"] = ("composed", {"operator_on": "host"})
    if device == "cuda":
        v["composed-noiob"] = ("composed", {"iobinding": False})
        v["cuda-graph"] = ("composed", {"cuda_graph": True})
    return v


def setup(model: str, cut: int, ratio: float, device: str, operator: str = "gaussian", engine: str = "composed",
          **options):
    from gs_onnx.generator import registry
    from gs_onnx.solve.objective import make_objective
    from gs_onnx.physics import make_operator

    man = registry.load(model)
    m = int(round(ratio * man.n))
    if operator == "identity":
        from gs_onnx.physics import IdentityOperator

        op = IdentityOperator(man.n)
    else:
        op = make_operator(operator, m, man.n, 0)
    y = op.forward(np.random.default_rng(0).random((1, man.n), dtype=np.float32))[0]
    obj = make_objective(man, cut, op, device=device, engine=engine, **options).with_measurements(y)
    return man, op, y, obj


# -------------------------------------------------------------------------------------------- eval

def eval_child(model: str, cut: int, device: str, batches: list[int], operator: str = "gaussian") -> dict:
    """Every engine variant and torch eager on the same evaluations, interleaved, per batch size K."""
    import torch

    from gs_export.from_onnx import torch_generator
    from gs_export.reference import TorchObjective
    from gs_onnx.generator.latent import init_latent
    from gs_onnx.solve.objective import make_objective

    man, op, y, obj = setup(model, cut, RATIO, device, operator)
    objs, failed = {}, {}
    Z1 = init_latent("cn01", obj.layout.size, np.random.default_rng(0), batch=1)
    for name, (engine, opts) in variants(device, operator).items():
        try:  # a variant that cannot run here (a CUDA graph that does not capture, ...) is reported, not fatal
            o = obj if name == "composed" else \
                make_objective(man, cut, op, device=device, engine=engine, **opts).with_measurements(y)
            o.value_and_grad_batch(Z1)
            objs[name] = o
        except Exception as e:  # noqa: BLE001
            failed[name] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
    tdev = "cuda" if device == "cuda" else "cpu"
    tobj = TorchObjective(torch_generator(man), cut, op, y, man.to_unit(), device=tdev)
    rows = []
    for k in batches:
        Z = init_latent("cn01", obj.layout.size, np.random.default_rng(k), batch=k)

        def t_eval():
            tobj.value_and_grad_batch(Z)
            if tdev == "cuda":
                torch.cuda.synchronize()

        fns = {}
        for name, o in objs.items():
            try:
                o.value_and_grad_batch(Z)
                fns[name] = (lambda o=o: o.value_and_grad_batch(Z))
            except Exception as e:  # noqa: BLE001
                failed[f"{name} K={k}"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        fns["torch"] = t_eval
        med, ratio = timed_group(fns, "torch")
        for name in objs:
            if name not in fns:
                med[name], ratio[name] = float("nan"), float("nan")
        rows.append({"batch": k, **{f"{n}_ms": 1e3 * t for n, t in med.items()},
                     **{f"{n}_ratio": r for n, r in ratio.items() if n != "torch"},
                     "runtime_ms": 1e3 * med["composed"], "torch_ms": 1e3 * med["torch"], "ratio": ratio["composed"]})
    return {"model": model, "cut": cut, "m": op.m, "operator": operator, "free_values": obj.layout.size,
            "provider": obj.provider, "defaults": obj.engine.operator_on + (", static batch" if obj.engine.static_batch else ""),
            "variants": list(objs), "failed": failed,
            "torch": f"{torch.__version__}, {torch.get_num_threads()} threads", "rows": rows,
            "peak_rss_gb": peak_rss_gb()}


def optimizer_child(model: str, cut: int, device: str, rows_list: list[int], its: int) -> dict:
    """Each optimiser's own time per iteration inside a recovery (history 100): the wall time of a fixed
    budget minus the time the objective took, for 1 image x K restarts in one lockstep batch. scipy L-BFGS-B
    and the batched torch-semantics L-BFGS (one step of ``its`` iterations, tolerances 0: no early stop; its
    line-search-free steps make one evaluation per iteration, scipy's about 1.05)."""
    from gs_onnx.solve.lbfgs import LBFGSSettings
    from gs_onnx.solve.settings import PAPER_LR
    from gs_onnx.solve.restart import Budget, recover_batch

    man, op, y, obj = setup(model, cut, RATIO, device)
    out = {"model": model, "cut": cut, "free_values": obj.layout.size, "iterations": its, "rows": []}
    lr = PAPER_LR.get(man.architecture, 1.0)  # the paper's learning rates, as gs-recover uses them
    for optimizer in ("scipy", "lbfgs"):
        for K in rows_list:
            b = Budget(max_iter=its, max_fun=its, ftol=0.0, gtol=0.0)
            st = LBFGSSettings(lr=lr, max_iter=its, steps=1, tolerance_grad=0.0, tolerance_change=0.0,
                               max_eval=2 * its)
            t = time.perf_counter()
            (rec,) = recover_batch(obj, y[None], restarts=K, budget=b, seeds=[0],
                                   batch="restarts" if K > 1 else "none", optimizer=optimizer,
                                   lbfgs=st if optimizer == "lbfgs" else None)
            wall, ev = time.perf_counter() - t, rec.eval_seconds
            iters = sum(r.iterations for r in rec.restarts)
            out["rows"].append({"optimizer": optimizer, "restarts": K, "wall_s": wall, "eval_s": ev,
                                "optimizer_s": wall - ev, "row_iterations": iters,
                                "optimizer_ms_per_row_iteration": 1e3 * (wall - ev) / max(iters, 1),
                                "eval_ms_per_step": 1e3 * ev / max(its, 1)})
    return out


def optspeed_child(n: int, batches: list[int], scipy_max_batch: int, warm: int = 100, timed_its: int = 10) -> dict:
    """The optimisers' own time per row-iteration at full history (100), on an analytic objective whose cost
    is a few vector operations: an ill-conditioned quadratic (eigenvalues 1e-6..1), so that L-BFGS keeps
    moving and fills its history. Both run ``warm`` iterations first; the next ``timed_its`` are timed
    (iteration timestamps), the objective's own time subtracted."""
    from gs_onnx.solve.lbfgs import LBFGSSettings, minimize_batch
    from gs_onnx.solve.restart import Budget, minimize_lockstep

    lam = np.logspace(-6, 0, n)
    spent = [0.0]

    def evaluate(keys, Z):
        t = time.perf_counter()
        g = Z * lam
        f = 0.5 * np.einsum("ij,ij->i", Z, g)
        spent[0] += time.perf_counter() - t
        return f, g

    rows = []
    total = warm + timed_its
    for B in batches:
        X0 = np.random.default_rng(B).standard_normal((B, n))
        out = {"n": n, "batch": B}
        for name in ("scipy", "lbfgs"):
            if name == "scipy" and B > scipy_max_batch:
                continue
            stamps = []
            spent[0] = 0.0
            marks = {}

            def on_iter(k):
                if k == 0:
                    stamps.append((time.perf_counter(), spent[0]))

            if name == "scipy":
                b = Budget(max_iter=total, max_fun=10 * total, ftol=0.0, gtol=0.0)
                minimize_lockstep(evaluate, list(X0), b, iteration=on_iter)
            else:
                st = LBFGSSettings(lr=1.0, max_iter=total, steps=1, tolerance_grad=0.0, tolerance_change=0.0,
                                   max_eval=10 * total)
                minimize_batch(evaluate, X0, st, iteration=lambda r, x, f: on_iter(r))
            (t0, e0), (t1, e1) = stamps[warm - 1], stamps[total - 1]
            marks[name] = (t1 - t0 - (e1 - e0)) / (timed_its * B)
            out[f"{name}_ms_per_row_iteration"] = 1e3 * marks[name]
        rows.append(out)
    return {"n": n, "rows": rows}


def flops_child(model: str, cut: int, device: str, batch: int = 1) -> dict:
    """FLOPs of the tail forward + input gradient (torch's counter, A excluded) and the runtime's time for
    the same work: the composed objective with the identity operator (whose cost is a copy)."""
    from torch.utils.flop_counter import FlopCounterMode

    from gs_export.from_onnx import torch_generator
    from gs_export.reference import TorchObjective
    from gs_onnx.generator.latent import init_latent

    man, op, y, obj = setup(model, cut, RATIO, "cpu" if device == "cpu" else device, "identity")
    tobj = TorchObjective(torch_generator(man), cut, op, y, man.to_unit())
    Z = init_latent("cn01", obj.layout.size, np.random.default_rng(0), batch=batch)
    zs = tobj._tensors(Z, True)
    with FlopCounterMode(display=False) as fc:  # .backward(): the counter does not support autograd.grad
        r = tobj._apply(tobj._x01(zs)) - tobj.y
        ((r * r).sum() / tobj.m).backward()
    gen_flops = fc.get_total_flops()
    t_gen = timed(lambda: obj.value_and_grad_batch(Z))
    return {"model": model, "cut": cut, "batch": batch, "gflop": gen_flops / 1e9, "tail_ms": 1e3 * t_gen,
            "gflops_per_s": gen_flops / t_gen / 1e9}


def matmul_gflops(device: str = "cpu", n: int = 4096) -> dict:
    """A large square matrix multiply: numpy float32 on the CPU; torch fp32, tf32 and bf16 on a GPU."""
    if device != "cuda":
        n = 2048
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        t = timed(lambda: a @ b, min_repeats=5)
        return {"fp32": 2 * n ** 3 / t / 1e9, "n": n}
    import torch

    out = {"n": n}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)

        def mm():
            a @ b
            torch.cuda.synchronize()

        out[name] = 2 * n ** 3 / timed(mm, min_repeats=10) / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


# --------------------------------------------------------------------------------------- CPU path

def cpu_child(model: str, cut: int, device: str) -> dict:
    """One evaluation (batch 1) of the default composed objective against its CPU variants: one intra-op
    thread, spinning threads, one session with a dynamic batch axis instead of one per batch size."""
    from gs_onnx.engine import runtime as rt
    from gs_onnx.generator.latent import init_latent
    from gs_onnx.solve.objective import make_objective

    man, op, y, obj = setup(model, cut, RATIO, device)
    z = init_latent("cn01", obj.layout.size, np.random.default_rng(0))

    def make(**kw):
        return make_objective(man, cut, op, device=device, **kw).with_measurements(y)

    orig = rt.session_options

    def spinning(threads=0, record_placement=False):
        so = orig(threads, record_placement)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return so

    rt.session_options = spinning
    try:
        spin = make()
    finally:
        rt.session_options = orig
    objs = {"default": obj, "one_thread": make(threads=1), "spinning": spin, "dynamic_batch": make(static_batch=False)}
    med, ratio = timed_group({k: (lambda o=o: o.value_and_grad_batch(z)) for k, o in objs.items()}, "default")
    return {"model": model, "cut": cut, **{f"{k}_ms": 1e3 * v for k, v in med.items()},
            **{f"{k}_ratio": v for k, v in ratio.items()}}


# ---------------------------------------------------------------------------------------- restarts

def restarts_child(model: str, cut: int, device: str) -> dict:
    """Two images x 3 restarts at a fixed budget under each batch mode (gs_onnx.solve.restart.BATCH_MODES)."""
    from gs_onnx.solve.restart import BATCH_MODES, Budget, recover_batch

    man, op, y, obj = setup(model, cut, RATIO, device)
    Y = np.stack([y, op.forward(np.random.default_rng(5).random((1, man.n), dtype=np.float32))[0]])
    its = 40 if model == "dcgan" else 6
    b = Budget(max_iter=its, max_fun=its, ftol=0.0, gtol=0.0)  # a fixed amount of work
    out = {"model": model, "cut": cut, "budget": f"2 images x 3 restarts x {its} iterations"}
    recover_batch(obj, Y[:1], restarts=1, budget=Budget(max_iter=2, max_fun=2), batch="none")  # warm-up
    for mode in BATCH_MODES:
        t = time.perf_counter()
        recs = recover_batch(obj, Y, restarts=3, budget=b, seeds=[0, 1], batch=mode)
        out[mode] = {"seconds": time.perf_counter() - t, "objective": [r.objective for r in recs]}
    return out


# --------------------------------------------------------------------------------------- operators

def ops_section() -> list[dict]:
    from gs_onnx.physics import GaussianOperator, SubsampledDCTOperator

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


def dataterm_section(batches=(1, 2, 3, 8)) -> list[dict]:
    """The L2 data term and its image-space gradient with the dense Gaussian (f, dL/dx = A^T 2 (A x - y) / m),
    two passes over A (A x, then A^T r: two matrix products) against one pass (row blocks of A, each read
    twice while in the cache: :func:`gs_onnx.physics.datafit.data_fit`), interleaved, per batch size. The rows of
    this table set ``FUSED_MAX_ROWS``."""
    from gs_onnx.physics import datafit
    from gs_onnx.physics import GaussianOperator

    rows = []
    for n in (12288, 49152):
        m = int(round(RATIO * n))
        op = GaussianOperator(m, n, 0)
        op.matrix()
        for k in batches:
            rng = np.random.default_rng(k)
            x = rng.random((k, n), dtype=np.float32)
            y = rng.standard_normal((1, m)).astype(np.float32)
            saved = datafit.FUSED_MAX_ROWS

            def run(limit):
                datafit.FUSED_MAX_ROWS = limit
                try:
                    return datafit.data_fit(op, x, y)
                finally:
                    datafit.FUSED_MAX_ROWS = saved

            (f1, _, g1), (f2, _, g2) = run(k), run(0)
            med, ratio = timed_group({"two": lambda: run(0), "one": lambda: run(k)}, "two", min_seconds=2.0)
            rows.append({"n": n, "m": m, "batch": k, "two_ms": 1e3 * med["two"], "one_ms": 1e3 * med["one"],
                         "ratio": ratio["one"], "default": "one" if k <= saved else "two",
                         "max_rel_diff": float(np.abs(g1 - g2).max() / np.abs(g2).max())})
        del op
    return rows


def psnr_child(model: str, cut: int, n_images: int, its: int, device: str) -> dict:
    from gs_onnx.generator import registry
    from gs_onnx.engine.cut import CutGenerator
    from gs_onnx.io.images import list_images, load_image
    from gs_onnx.physics import measure, paper_sigma
    from gs_onnx.metrics import psnr
    from gs_onnx.physics import make_operator
    from gs_onnx.solve.restart import Budget, recover
    from gs_onnx.solve.stopping import PAPER

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
                rec = recover(gen, op, ys[i], restarts=1, budget=Budget(max_iter=its, max_fun=int(its * 1.25)), stop=PAPER,
                              seed=i)
                ps.append(psnr(rec.image, xs[i].reshape(man.image_shape)))
            out[f"{ratio:g}_{kind}"] = {"psnr": float(np.mean(ps)), "std": float(np.std(ps)),
                                        "s_per_image": (time.perf_counter() - t) / len(files), "all": ps}
    return out


def big_child(device: str) -> dict:
    from gs_onnx.generator.latent import init_latent

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
        res = eval_child(rest[0], int(rest[1]), dev, [int(b) for b in rest[2].split(",")], rest[3])
    elif kind == "optimizer":
        res = optimizer_child(rest[0], int(rest[1]), dev, [int(b) for b in rest[2].split(",")], int(rest[3]))
    elif kind == "optspeed":
        res = optspeed_child(int(rest[0]), [int(b) for b in rest[1].split(",")], int(rest[2]))
    elif kind == "flops":
        res = flops_child(rest[0], int(rest[1]), dev, int(rest[2]))
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
    dates = res.get("section_dates") or {}
    by_date: dict = {}
    for sec, d in sorted(dates.items()):
        by_date.setdefault(d, []).append(sec)
    when = "; ".join(f"{', '.join(secs)} on {d}" for d, secs in sorted(by_date.items())) if len(by_date) > 1 \
        else res["date"]
    L = ["# Benchmarks", "",
         f"Measured {when} with `python benchmarks/perf.py` on **{res['hardware']}** "
         f"({res['device']}; onnxruntime {res['onnxruntime']}, torch {res['torch']}, numpy {res['numpy']}). "
         "Every ratio compares the same computation measured side by side in one run. Re-run the script to "
         "regenerate this page on your machine.", ""]
    if res.get("notes"):
        L += ["What the numbers say:", "", res["notes"], ""]
    if "eval" in res:
        L += ["## One objective + gradient evaluation: runtime vs torch eager", "",
              f"f(z) = ||A G_c(z) - y||^2 / m and df/dz for K latents in one batch (restarts or images), "
              f"m/n = {RATIO}. `composed` is the default engine (the whole objective in one ONNX Runtime session "
              "with IOBinding; where the operator goes and whether shapes are static per batch size is the "
              "device's default, in the `defaults` column); `graph`/`host` force the operator into the graph or "
              "onto the host; `blocks` is the per-block reference path (two sessions per block, A in numpy). "
              "Torch: the same generator rebuilt from the model's ONNX weights, eager autograd, A as a torch "
              "tensor. All variants and torch run interleaved (a, b, c, ..., a, b, c, ... for at least 3 s); times "
              "are medians, ratios the median of the per-round ratios to torch (< 1: faster than torch).", "",
              "| model | cut | operator | defaults | K | composed ms | blocks ms | torch ms | composed / torch | "
              "blocks / torch | graph / torch | host / torch | other variants / torch |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in res["eval"]:
            for r in e["rows"]:
                other = ", ".join(f"{v} {r[v + '_ratio']:.2f}" for v in e.get("variants", [])
                                  if v not in ("composed", "blocks", "composed-graph", "composed-host"))
                L.append(f"| {e['model']} | {e['cut']} | {e.get('operator', 'gaussian')} | {e.get('defaults', '')} | "
                         f"{r['batch']} | {r['runtime_ms']:.1f} | {r.get('blocks_ms', float('nan')):.1f} | "
                         f"{r['torch_ms']:.1f} | **{r['ratio']:.2f}** | {r.get('blocks_ratio', float('nan')):.2f} | "
                         f"{r.get('composed-graph_ratio', float('nan')):.2f} | "
                         f"{r.get('composed-host_ratio', float('nan')):.2f} | {other or '-'} |")
        L += ["", f"Providers: {', '.join(sorted({e['provider'] for e in res['eval']}))}; torch "
              f"{res['eval'][0]['torch']}.", ""]
        for e in res["eval"]:
            for v, msg in (e.get("failed") or {}).items():
                L.append(f"- {e['model']} c={e['cut']} {e.get('operator', '')}: variant `{v}` could not run: {msg}")
        L.append("")
    if "optimizer" in res:
        L += ["## Each optimiser's own time inside a recovery", "",
              "A fixed budget (no early stop, history 100) on one image with K restarts (K > 1: one lockstep "
              "batch); the optimiser's time is the wall time minus the time spent evaluating the objective. "
              "`paper budget s` is the wall time of one image at the paper's 3 restarts x 500 iterations: measured "
              "where the run had 500 iterations, otherwise projected from the K = 3 row (wall s x 500 / iterations, "
              "marked ~).", "",
              "| model | cut | free values | optimiser | K | iterations | wall s | evaluation s | optimiser s | "
              "optimiser ms per row-iteration | evaluation ms per step | paper budget s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in res["optimizer"]:
            for r in e["rows"]:
                paper = ""
                if r["restarts"] == 3:
                    paper = (f"{r['wall_s']:.1f}" if e["iterations"] >= 500
                             else f"~{r['wall_s'] * 500 / e['iterations']:.0f}")
                L.append(f"| {e['model']} | {e['cut']} | {e['free_values']} | {r.get('optimizer', 'scipy')} | "
                         f"{r['restarts']} | {e['iterations']} | "
                         f"{r['wall_s']:.2f} | {r['eval_s']:.2f} | {r['optimizer_s']:.2f} | "
                         f"{r['optimizer_ms_per_row_iteration']:.2f} | {r['eval_ms_per_step']:.2f} | {paper} |")
        L.append("")
    if "optspeed" in res:
        L += ["## The optimisers' own time per iteration: scipy L-BFGS-B vs the batched torch-semantics L-BFGS", "",
              "History 100, full (100 warm-up iterations, the next 10 timed), on an ill-conditioned quadratic whose "
              "evaluation is a few vector operations (its time subtracted); ms per row-iteration. scipy runs one "
              "L-BFGS-B per row (rows in lockstep threads, one after another under the GIL), so its cost per "
              "row-iteration does not fall with the batch; it was not run at the largest batches (`-`).", "",
              "| n | batch | scipy ms | lbfgs ms | scipy / lbfgs |", "|---|---|---|---|---|"]
        for e in res["optspeed"]:
            ref = next((r["scipy_ms_per_row_iteration"] for r in reversed(e["rows"]) if "scipy_ms_per_row_iteration" in r), None)
            for r in e["rows"]:
                sc = r.get("scipy_ms_per_row_iteration")
                lb = r["lbfgs_ms_per_row_iteration"]
                ratio = (sc or ref) / lb if (sc or ref) else float("nan")
                L.append(f"| {e['n']} | {r['batch']} | {sc:.2f} | {lb:.3f} | {ratio:.1f}{'' if sc else ' (vs the largest scipy batch)'} |"
                         if sc else f"| {e['n']} | {r['batch']} | - | {lb:.3f} | {ratio:.1f} (vs scipy at the largest batch run) |")
        L.append("")
    if "cpu" in res:
        L += ["## CPU path variants", "",
              "One evaluation at batch 1 (ms) of the default composed objective and of its variants, interleaved: "
              "one intra-op thread, spinning threads, one session with a dynamic batch axis (the default builds "
              "one session per batch size, with static shapes). Ratios are to the default.", "",
              "| model | cut | default | 1 thread | spinning | dynamic batch |", "|---|---|---|---|---|---|"]
        for c in res["cpu"]:
            L.append(f"| {c['model']} | {c['cut']} | {c['default_ms']:.1f} | {c['one_thread_ms']:.1f} "
                     f"({c['one_thread_ratio']:.2f}) | {c['spinning_ms']:.1f} ({c['spinning_ratio']:.2f}) | "
                     f"{c['dynamic_batch_ms']:.1f} ({c['dynamic_batch_ratio']:.2f}) |")
        L.append("")
    if "restarts" in res:
        L += ["## Batching restarts and images", "",
              "Two images x 3 restarts at a fixed budget (no early stop) under each batch mode of `gs-recover "
              "--batch`: `none` (one restart after another), `restarts` (each image's restarts in one lockstep "
              "batch), `images` (all 6 rows in one batch). Every row keeps its own L-BFGS-B state.", "",
              "| model | cut | budget | none s | restarts s | images s | restarts / none | images / none |",
              "|---|---|---|---|---|---|---|---|"]
        for e in res["restarts"]:
            n0, r0, i0 = e["none"]["seconds"], e["restarts"]["seconds"], e["images"]["seconds"]
            L.append(f"| {e['model']} | {e['cut']} | {e['budget']} | {n0:.2f} | {r0:.2f} | {i0:.2f} | "
                     f"{r0 / n0:.2f} | {i0 / n0:.2f} |")
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
    if "dataterm" in res:
        L += ["## The data term with the dense Gaussian: one pass over A or two", "",
              "f = ||A x - y||^2 / m and its gradient A^T 2 (A x - y) / m for K images: two matrix products "
              "(two passes over A) against row blocks of 3 MiB (each block gives its part of A x - y and of "
              "A^T r while it is still in the cache: one pass), interleaved. `default` is what "
              "`gs_onnx.physics.datafit.data_fit` does at that K (`FUSED_MAX_ROWS`).", "",
              "| n | m | K | two passes ms | one pass ms | one / two | default | gradient max rel diff |",
              "|---|---|---|---|---|---|---|---|"]
        for r in res["dataterm"]:
            L.append(f"| {r['n']} | {r['m']} | {r['batch']} | {r['two_ms']:.2f} | {r['one_ms']:.2f} | "
                     f"**{r['ratio']:.2f}** | {r['default']} | {r['max_rel_diff']:.1e} |")
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
        mm = res["matmul_gflops"]
        if not isinstance(mm, dict):
            mm = {"fp32": mm, "n": 2048}
        refs = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in mm.items() if k != "n")
        L += ["## Achieved FLOP/s", "",
              "Generator FLOPs of one evaluation (tail forward + input gradient), counted by torch's "
              "FlopCounterMode on the torch reference; divided by the runtime's time for the same work (the "
              "composed objective with the identity operator). "
              f"Reference: a {mm['n']} x {mm['n']} matrix multiply on the same device: {refs}.", "",
              "| model | cut | batch | GFLOP / evaluation | runtime ms | GFLOP/s | share of fp32 matmul |",
              "|---|---|---|---|---|---|---|"]
        for f in res["flops"]:
            L.append(f"| {f['model']} | {f['cut']} | {f.get('batch', 1)} | {f['gflop']:.3f} | {f['tail_ms']:.2f} | "
                     f"{f['gflops_per_s']:.1f} | {f['gflops_per_s'] / mm['fp32']:.0%} |")
        L.append("")
    out.write_text("\n".join(L))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", default="eval,optimizer,cpu,restarts,dataterm,ops,psnr,big,flops")
    ap.add_argument("--batches", default=None,
                    help="Batch sizes K of the eval section (default: 1,3,8,32 for DCGAN, 1,3,8 for the 128 px "
                         "models on the CPU; 1,3,32,96 on CUDA).")
    ap.add_argument("--operators", default="gaussian", help="Operators of the eval section (gaussian,srdct).")
    ap.add_argument("--optimizer-iters", default="20",
                    help="Iterations of the optimizer section: a number, or per model (dcgan:500,began:20).")
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
    for kind in ("eval", "optimizer", "cpu", "restarts"):
        if kind not in only or (kind == "cpu" and a.device != "cpu"):
            continue
        res[kind] = []
        for model, cut in CONFIGS:
            for operator in (a.operators.split(",") if kind == "eval" else [None]):
                print(f"{kind} {model} c={cut} {operator or ''}", flush=True)
                extra = []
                if kind == "eval":
                    ks = a.batches or ("1,3,32,96" if a.device == "cuda" else "1,3,8,32" if model == "dcgan" else "1,3,8")
                    extra = [ks, operator]
                elif kind == "optimizer":
                    its = dict(x.split(":") for x in a.optimizer_iters.split(",")) if ":" in a.optimizer_iters else {}
                    extra = ["1,3", str(its.get(model, a.optimizer_iters if not its else 20))]
                res[kind].append(child([kind, model, str(cut), *extra, a.device]))
    if "optspeed" in only:
        print("optspeed", flush=True)
        res["optspeed"] = [child(["optspeed", "8192", "1,3,32,96", "32", a.device]),
                           child(["optspeed", "40960", "1,3,32,96", "3", a.device])]
    if "ops" in only:
        print("ops", flush=True)
        res["ops"] = ops_section()
    if "dataterm" in only:
        print("dataterm", flush=True)
        res["dataterm"] = dataterm_section()
    if "psnr" in only:
        print("psnr", flush=True)
        res["psnr"] = child(["psnr", "vae", "1", str(a.psnr_images), str(a.psnr_iters), a.device])
    if "big" in only:
        print("big", flush=True)
        res["big"] = child(["big", a.device])
    if "flops" in only:
        print("flops", flush=True)
        res["matmul_gflops"] = matmul_gflops(a.device)
        fb = (1, 32) if a.device == "cuda" else (1,)
        res["flops"] = [child(["flops", model, str(cut), str(b), a.device]) for model, cut in CONFIGS for b in fb]
    for sec in ("eval", "optimizer", "cpu", "restarts", "optspeed", "dataterm", "ops", "psnr", "big", "flops"):
        if sec in only and (sec != "cpu" or a.device == "cpu"):
            res.setdefault("section_dates", {})[sec] = res["date"]
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
