"""Speed and memory of the recovery graph against the host-driven path with the same optimiser, side by side.

    python benchmarks/recovery_graph_perf.py [--device cpu|cuda] [--iters 50] [--rounds 5] [--out FILE.json]

For dcgan c=1 (Gaussian, m/n 0.1628) and began c=2 (the DCT operator, m/n 0.1628), batch (restarts) 1 and 3: the
host path (gs_onnx.solve.lbfgs, the paper's L-BFGS, on the composed engine with its default operator placement)
and the recovery graph (one session run) each run the same fixed budget from the same starts, interleaved
(host, graph, host, graph, ...), ``--rounds`` times; seconds per iteration are the medians, the ratio the median
of per-round ratios. Then resident memory while the graph runs 500 iterations (sampled every 50 ms by a thread)
and after each of ``--mem-runs`` such runs. Prints a markdown table.
"""
import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf import hardware  # noqa: E402

from gs_onnx.generator.registry import load  # noqa: E402
from gs_onnx.physics import make  # noqa: E402
from gs_onnx.solve.lbfgs import LBFGSSettings  # noqa: E402
from gs_onnx.solve.objective import make_objective  # noqa: E402
from gs_onnx.solve.recovery_graph import GraphRecovery, empty_state, prior_arrays, recovery_model  # noqa: E402
from gs_onnx.solve.restart import Budget, recover_batch, start_points  # noqa: E402
from gs_onnx.solve.skipprior import prior_for, with_skip_prior  # noqa: E402
from gs_onnx.solve.stopping import PAPER  # noqa: E402

SETUPS = [("dcgan", 1, "gaussian", 0.1), ("began", 2, "srdct", 1.0)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def case(model, cut, kind, lr, K, iters, device, rounds):
    man = load(model)
    op = make(kind, man.image_shape, m=int(round(0.1628 * man.n)), seed=0)
    rng = np.random.default_rng(0)
    y = op.forward(rng.random((1, man.n)).astype(np.float32))[0].astype(np.float32)
    prior = prior_for(man, cut)
    obj = with_skip_prior(make_objective(man, cut, op, device=device), prior).with_measurements(y)
    size = obj.layout.size
    z0 = np.stack(start_points("cn01", size, 0, K)).astype(np.float32)
    st = LBFGSSettings(lr=lr, max_iter=min(20, iters), steps=-(-iters // min(20, iters)), history=100)
    model_proto, values = recovery_model(man, cut, op, history=100)
    g = GraphRecovery(model_proto, device)
    mean, scale = prior_arrays(man, cut, obj.layout, prior)
    feed = {"z0": z0, "y": y[None], "w": np.ones((1, op.m), np.float32), "prior_mean": mean, "prior_scale": scale,
            "lr": np.asarray(lr), "tolerance_grad": np.asarray(1e-7), "tolerance_change": np.asarray(1e-9),
            "steps": np.asarray(st.steps, np.int64), "step_iters": np.asarray(st.max_iter, np.int64),
            "patience": np.asarray(0, np.int64), "start": np.asarray(0, np.int64),
            "chunk": np.asarray(st.steps * st.max_iter, np.int64), **empty_state("lbfgs", size, 100), **values}

    def host():
        recover_batch(obj, y[None], restarts=K, budget=Budget(max_iter=iters, max_fun=2 * iters, history=100),
                      seeds=[0], z0s=[z0], batch="restarts" if K > 1 else "none", stop=PAPER, optimizer="lbfgs",
                      lbfgs=st)

    def graph():
        out = g.run(feed)
        assert int(out["iterations"].max()) == iters, out["iterations"]

    host(), graph()
    th, tg = [], []
    for _ in range(rounds):
        for fn, ts in ((host, th), (graph, tg)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    ratio = np.array(tg) / np.array(th)
    return {"model": model, "cut": cut, "operator": kind, "restarts": K, "iterations": iters,
            "host_ms_per_iter": 1e3 * float(np.median(th)) / iters, "graph_ms_per_iter": 1e3 * float(np.median(tg)) / iters,
            "ratio_median": float(np.median(ratio)), "ratio_range": [float(ratio.min()), float(ratio.max())],
            "operator_place_host_path": getattr(getattr(obj, "engine", None), "operator_on", None)}, g, feed


def memory(g, feed, iters=500, runs=5):
    feed = dict(feed, steps=np.asarray(-(-iters // 20), np.int64), step_iters=np.asarray(20, np.int64))
    samples, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            samples.append(rss_mb())
            time.sleep(0.05)

    after = []
    before = rss_mb()
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    for _ in range(runs):
        g.run(feed)
        after.append(rss_mb())
    stop.set()
    th.join()
    return {"iterations": iters, "runs": runs, "rss_before_mb": round(before, 1),
            "rss_after_each_run_mb": [round(v, 1) for v in after], "rss_peak_mb": round(max(samples), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="dcgan,began")
    ap.add_argument("--mem-runs", type=int, default=5, help="runs of 500 iterations for the memory check")
    ap.add_argument("--out", default="runs/recovery_graph_perf.json")
    a = ap.parse_args()
    try:
        hw = hardware(a.device)
    except Exception:  # noqa: BLE001  (no torch to name the GPU)
        hw = a.device
    res = {"hardware": hw, "device": a.device, "cases": [], "memory": {}}
    for model, cut, kind, lr in SETUPS:
        if model not in a.models.split(","):
            continue
        for K in (1, 3):
            r, g, feed = case(model, cut, kind, lr, K, a.iters, a.device, a.rounds)
            res["cases"].append(r)
            print(json.dumps(r), flush=True)
            if K == 1:
                res["memory"][model] = memory(g, feed, runs=a.mem_runs)
                print(json.dumps(res["memory"][model]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"\n{res['hardware']}, {a.device}; {a.iters} iterations, {a.rounds} interleaved rounds\n")
    print("| model | restarts | host ms/iteration | graph ms/iteration | graph / host (median, range) |")
    print("|---|---|---|---|---|")
    for r in res["cases"]:
        print(f"| {r['model']} c={r['cut']} ({r['operator']}) | {r['restarts']} | {r['host_ms_per_iter']:.1f} | "
              f"{r['graph_ms_per_iter']:.1f} | {r['ratio_median']:.2f} ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) |")


if __name__ == "__main__":
    main()
