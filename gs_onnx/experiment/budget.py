"""``gs-experiment budget``: fixed budgets and held-out stopping rules replayed on traced recoveries.

Every ``paper`` and ``holdout`` row of the budget preset carries the trace of one restart: at every iterate
its iteration, f on the fitted rows, the held-out loss, the PSNR and the measurement error of its image, and
the seconds spent (tracing excluded). A restart's iterates do not depend on when it would have stopped, so
any fixed budget (a point on a ``paper`` trace) and any held-out rule (patience, number of restarts, pruning
the restarts early, refitting on all measurements) can be replayed exactly on the traces:

* fixed budget k with K restarts: each restart at iterate k, the winner by measurement error (the paper's
  rule); seconds: the K restarts' time to iterate k;
* ``holdout`` with patience P and K restarts: each restart stops at the first iterate P past its best held-out
  loss and returns that best iterate; the winner is the lowest held-out loss; ``prune`` T: at iterate T only
  the restart with the lowest held-out loss so far goes on;
* ``refit``: the ``holdout`` rule picks a restart and an iterate k*; that restart's ``paper`` trace (same
  start, every measurement) at iterate k* is the result; seconds: the holdout run's plus k* iterations.

``auto`` rows are recoveries by the model's default rule as ``gs-recover`` runs it (not replayed).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

FIXED = (25, 50, 100, 200, 500)
PATIENCES = (10, 20, 30, 50)
PRUNES = (None, 20, 40)


def _key(r: dict) -> tuple:
    """A condition: model, cut, the measurement setting (``gaussian``, ``mask keep=0.1``, ...), m/n, dataset."""
    return (r["model"], r.get("cut"), r.get("setting") or r.get("operator") or "gaussian", r["ratio"], r["dataset"])


def _title(cond: tuple) -> str:
    model, cut, setting, ratio, ds = cond
    what = f"m/n = {ratio}" if setting == "gaussian" else f"{setting}, m/n = {ratio}"
    return f"{model} c={cut}, {what}, {ds}"


def _slug(cond: tuple) -> str:
    model, _, setting, ratio, ds = cond
    tag = "" if setting == "gaussian" else "_" + "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in setting)
    return f"budget_{model}{tag}_{ratio}_{ds}"


def collect(rows: list[dict[str, Any]]):
    """{condition: {variant: {image index: {restart: trace}}}} for the traced rows, and the ``auto`` rows by
    condition."""
    traced: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    auto: dict = defaultdict(list)
    for r in rows:
        if r.get("preset") != "budget":
            continue
        if r.get("trace"):
            traced[_key(r)][r["variant"]][r["index"]][r["restart"]] = r["trace"]
        elif r.get("variant") == "auto":
            auto[_key(r)].append(r)
    return traced, auto


def _at(trace: dict, k: int, field: str):
    """The value of ``field`` at iterate k (the last one where the run ended earlier)."""
    its = trace["iteration"]
    j = min(np.searchsorted(its, k, side="right") - 1, len(its) - 1)
    return trace[field][max(j, 0)]


def fixed_budget(images: dict, k: int, restarts: int) -> tuple[list[float], list[float]]:
    """PSNR and seconds per image for the fixed budget of k iterations with the first ``restarts`` restarts."""
    ps, secs = [], []
    for idx in sorted(images):
        runs = images[idx]
        rs = [runs[r] for r in sorted(runs)[:restarts]]
        if len(rs) < restarts:
            continue
        win = min(rs, key=lambda t: _at(t, k, "err"))
        ps.append(_at(win, k, "psnr"))
        secs.append(sum(_at(t, k, "seconds") for t in rs))
    return ps, secs


def replay(trace: dict, patience: int, until: int | None = None) -> dict:
    """The held-out rule on one trace: stop iterate, best iterate, its PSNR and held-out loss, seconds."""
    best, best_k, best_j = math.inf, 0, 0
    its = trace["iteration"]
    stop_j = len(its) - 1
    for j, k in enumerate(its):
        h = trace["held"][j]
        if h < best:
            best, best_k, best_j = h, k, j
        if k - best_k >= patience or (until is not None and k >= until):
            stop_j = j
            break
    return {"stop": its[stop_j], "best": best_k, "psnr": trace["psnr"][best_j], "held": best,
            "seconds": trace["seconds"][stop_j], "err": trace["err"][best_j]}


def holdout_rule(images: dict, restarts: int, patience: int, prune: int | None = None) -> dict[str, list]:
    """PSNR, seconds, iterations (summed over restarts) and the chosen (restart, iterate) per image."""
    out: dict[str, list] = {"psnr": [], "seconds": [], "iterations": [], "choice": [], "index": []}
    for idx in sorted(images):
        runs = images[idx]
        keys = sorted(runs)[:restarts]
        if len(keys) < restarts:
            continue
        if prune is None or restarts == 1:
            res = {r: replay(runs[r], patience) for r in keys}
            spent = sum(v["seconds"] for v in res.values())
            its = sum(v["stop"] for v in res.values())
        else:
            early = {r: replay(runs[r], patience, until=prune) for r in keys}
            keep = min(keys, key=lambda r: early[r]["held"])
            res = {keep: replay(runs[keep], patience)}
            spent = sum(v["seconds"] for r, v in early.items() if r != keep) + res[keep]["seconds"]
            its = sum(v["stop"] for r, v in early.items() if r != keep) + res[keep]["stop"]
        win = min(res, key=lambda r: res[r]["held"])
        out["psnr"].append(res[win]["psnr"])
        out["seconds"].append(spent)
        out["iterations"].append(its)
        out["choice"].append((win, res[win]["best"]))
        out["index"].append(idx)
    return out


def refit_rule(holdout: dict, paper: dict, restarts: int, patience: int) -> dict[str, list]:
    """The ``refit`` variant: the holdout rule's restart and iterate k*, read off the paper trace."""
    h = holdout_rule(holdout, restarts, patience)
    out: dict[str, list] = {"psnr": [], "seconds": [], "iterations": []}
    for idx, (r, k), secs, its in zip(h["index"], h["choice"], h["seconds"], h["iterations"]):
        t = paper.get(idx, {}).get(r)
        if t is None:
            continue
        out["psnr"].append(_at(t, max(k, 1), "psnr"))
        out["seconds"].append(secs + _at(t, max(k, 1), "seconds"))
        out["iterations"].append(its + max(k, 1))
    return out


def _ms(v) -> str:
    return f"{np.mean(v):.2f} +- {np.std(v):.2f}" if len(v) else "-"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The tables of the budget experiment, per condition."""
    traced, auto = collect(rows)
    L = []
    for cond in sorted(set(traced) | set(auto), key=str):
        L += [f"## {_title(cond)}", ""]
        paper = traced[cond].get("paper", {})
        if paper:
            top = max(k for runs in paper.values() for t in runs.values() for k in t["iteration"])
            cap = max(int(r.get("max_iter") or 0) for r in rows if _key(r) == cond and r.get("variant") == "paper")
            budgets = [k for k in FIXED if k <= max(top, cap)] + ([cap] if cap and cap not in FIXED else [])
            L += ["Fixed budgets (every measurement fitted; the winner by measurement error, the paper's rule; a "
                  "restart that converged earlier keeps its last iterate):", "",
                  "| iterations | 1 restart PSNR dB | 1 restart s | 3 restarts PSNR dB | 3 restarts s |", "|---|---|---|---|---|"]
            for k in sorted(budgets):
                p1, s1 = fixed_budget(paper, k, 1)
                p3, s3 = fixed_budget(paper, k, 3)
                L.append(f"| {k} | {_ms(p1)} | {f'{np.mean(s1):.1f}' if s1 else '-'} | {_ms(p3)} | "
                         f"{f'{np.mean(s3):.1f}' if s3 else '-'} |")
            L.append(f"\n{len(paper)} images.\n")
        for variant, imgs in sorted(traced[cond].items()):
            if not variant.startswith("holdout"):
                continue
            L += [f"Held-out rules replayed on the `{variant}` traces (PSNR of the returned image; seconds and "
                  "iterations summed over the restarts run; prune T: after T iterations only the restart with the "
                  "lowest held-out loss goes on):", "",
                  "| rule | restarts | patience | prune | PSNR dB | s | iterations |", "|---|---|---|---|---|---|---|"]
            for K in (1, 2, 3):
                for P in PATIENCES:
                    for T in PRUNES if K > 1 else (None,):
                        h = holdout_rule(imgs, K, P, T)
                        if h["psnr"]:
                            L.append(f"| holdout | {K} | {P} | {T or '-'} | {_ms(h['psnr'])} | "
                                     f"{np.mean(h['seconds']):.1f} | {np.mean(h['iterations']):.0f} |")
                    if paper:
                        f = refit_rule(imgs, paper, K, P)
                        if f["psnr"]:
                            L.append(f"| refit | {K} | {P} | - | {_ms(f['psnr'])} | {np.mean(f['seconds']):.1f} | "
                                     f"{np.mean(f['iterations']):.0f} |")
            L.append("")
        if auto.get(cond):
            a = auto[cond]
            stop = a[0].get("stopping") or {}
            its = [sum(x["iterations"] for x in r.get("restarts_run", [])) for r in a]
            L += [f"The default rule as gs-recover runs it ({', '.join(f'{k} {v}' for k, v in stop.items())}; "
                  f"{len(a)} images): PSNR {_ms([r['psnr'] for r in a])} dB, {np.mean([r['seconds'] for r in a]):.1f} "
                  f"s per image, {np.mean(its):.0f} iterations per image.", ""]
    return "\n".join(L)


def figure(plt, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """PSNR vs iterations and vs seconds (fixed budgets, 1 and 3 restarts), the default rule marked."""
    traced, auto = collect(rows)
    written = []
    for cond, variants in sorted(traced.items(), key=lambda kv: str(kv[0])):
        paper = variants.get("paper")
        if not paper:
            continue
        ks = sorted({k for runs in paper.values() for t in runs.values() for k in t["iteration"]})
        ks = [k for k in ks if k >= 1]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for K, color in ((1, "tab:gray"), (3, "tab:blue")):
            curve = [(k, *fixed_budget(paper, k, K)) for k in ks]
            curve = [(k, np.mean(p), np.mean(s)) for k, p, s in curve if p]
            if not curve:
                continue
            k_, p_, s_ = zip(*curve)
            a1.plot(k_, p_, color=color, label=f"fixed budget, {K} restart{'s' if K > 1 else ''}")
            a2.plot(s_, p_, color=color, label=f"fixed budget, {K} restart{'s' if K > 1 else ''}")
            for k in FIXED:
                if k in k_:
                    j = k_.index(k)
                    a1.plot([k], [p_[j]], "o", color=color, ms=4)
        if auto.get(cond):
            a = auto[cond]
            its = np.mean([sum(x["iterations"] for x in r.get("restarts_run", [])) /
                           max(len(r.get("restarts_run", [])), 1) for r in a])
            ps, sec = np.mean([r["psnr"] for r in a]), np.mean([r["seconds"] for r in a])
            a1.plot([its], [ps], "*", color="tab:red", ms=14, label="default rule (mean iterations per restart)")
            a2.plot([sec], [ps], "*", color="tab:red", ms=14, label="default rule")
        a1.set_xscale("log")
        a1.set_xlabel("L-BFGS-B iterations per restart")
        a2.set_xlabel("seconds per image")
        a2.set_xscale("log")
        for ax in (a1, a2):
            ax.set_ylabel("PSNR (dB)")
            ax.grid(alpha=0.3)
        a1.legend(fontsize=7, loc="lower right")
        fig.suptitle(_title(cond))
        fig.tight_layout()
        p = out / f"{_slug(cond)}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written
