"""From results rows to numbers: the winning restart per image, then mean +- std over images, and the
markdown tables of every preset. Plots live in :mod:`gs_onnx.experiment.plot` (matplotlib, optional).

A row's *condition* is everything but the image and the restart: (preset, model, variant, method, cut,
init, dataset, operator, ratio). Per image and condition the restart with the lowest measurement error
||A clamp(x) - y|| wins (never the ground truth), as in the paper.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GSError
from .presets import label as method_label
from .task import NOGS, method_of

CONDITION = ("preset", "model", "variant", "method", "cut", "init", "dataset", "operator", "ratio", "plan",
             "settings")


def _starts(method) -> bool:
    """Whether a row's method runs restarts from start latents (False for one not installed here)."""
    try:
        return isinstance(method, str) and method_of(method).restarts
    except GSError:
        return False


def plan_label(row: dict[str, Any]) -> str:
    """The budget a row ran, in words: ``auto: 1 x 100``, ``auto: holdout 0.1, patience 20, 1 x <= 200``,
    ``paper: <= 500 it per restart`` (one row per restart), ``<= 2000 it`` (Lasso-DCT), ``-``."""
    b = row.get("budget") if isinstance(row.get("budget"), dict) else {}
    if _starts(row.get("method")):
        opts = dict(tuple(kv) for kv in row.get("options") or [] if isinstance(kv, (list, tuple)) and len(kv) == 2)
        if b.get("plan") == "auto" and (opts.get("budget") == "auto" or opts.get("stop") == "auto"):
            st = row.get("stopping") if isinstance(row.get("stopping"), dict) else {}
            k = len(row.get("restarts_run") or []) or 1
            rule = "" if st.get("rule", "fixed") == "fixed" else \
                f"{st.get('rule')} {st.get('holdout')}, patience {st.get('patience')}, "
            return f"auto: {rule}{k} x {'<= ' if rule else ''}{b.get('max_iter')}"
        return f"{b.get('plan', 'paper')}: <= {b.get('max_iter')} it per restart"
    solver = b.get("solver") if isinstance(b.get("solver"), dict) else {}
    return f"<= {solver['max_iter']} it" if "max_iter" in solver else "-"


#: Task fields that change a result beside the condition's named ones; rows that differ in any of them are
#: reported apart (a rerun with another --max-iter into the same folder is its own condition).
SETTING_FIELDS = ("seed", "noise", "sigma", "operator_params", "max_iter", "max_fun", "options")


def settings_label(row: dict[str, Any]) -> str:
    """The other settings of a row's task in a canonical short form (options that only trace are left out)."""
    parts = []
    for k in SETTING_FIELDS:
        v = row.get(k)
        if k == "options":  # tracing changes nothing; the budget is the plan column
            v = [kv for kv in (v or []) if not (isinstance(kv, (list, tuple)) and kv and kv[0] in ("trace", "budget"))]
        if k == "sigma" and "sigma=" not in str(row.get("setting", "")):
            continue  # the noise rule's own sigma (it follows m): not a setting of its own
        if v in (None, [], ()) or (k == "seed" and v == 0) or (k == "noise" and v is True):
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join("=".join(map(str, kv)) if isinstance(kv, (list, tuple)) else str(kv) for kv in v)
        parts.append(f"{k}={v}")
    return " ".join(parts)


def condition(row: dict[str, Any]) -> tuple:
    """The condition of a row (everything but the image and the restart), as a tuple in :data:`CONDITION` order."""
    derived = {"plan": plan_label(row), "settings": settings_label(row)}
    return tuple(derived[c] if c in derived else row.get(c) for c in CONDITION)


def label(cond: dict[str, Any]) -> str:
    """A method label for legends: ``GS (c=1)``, ``no GS (c=0)``, ``mGANprior (c=1)``, ``Lasso-DCT``."""
    base = method_label(cond["method"])
    if cond["method"] != NOGS and _starts(cond["method"]) and cond.get("cut") is not None:
        base += f" (c={cond['cut']})"
    return base


def winners(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (condition, image): the restart with the lowest measurement error, with
    ``restarts_seen`` and ``seconds_all_restarts`` (the image's time over all its restarts) added."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r.get("method") == "samples":
            continue
        k = condition(r) + (r.get("dataset"), r.get("index"))
        prev = best.get(k)
        for field in ("image", "model_sha256"):  # one condition, one image index: one image and one model
            if prev is not None and prev.get(field) is not None and r.get(field) is not None \
                    and prev[field] != r[field]:
                what = "images" if field == "image" else "models of one name"
                raise GSError(f"results of two different {what} are pooled in one condition ({r.get('model')}, "
                              f"{r.get('method')}, {r.get('dataset')} image {r.get('index')}: {str(prev[field])[:60]} "
                              f"vs {str(r[field])[:60]}): keep each in its own results folder")
        err = r.get("measurement_error")
        err = float("inf") if err is None else err
        prev = best.get(k)
        seen = (prev["restarts_seen"] if prev else 0) + 1
        total = (prev["seconds_all_restarts"] if prev else 0.0) + (r.get("seconds") or 0.0)
        if prev is None or err < (prev.get("measurement_error") or float("inf")):
            best[k] = dict(r)
        best[k]["restarts_seen"], best[k]["seconds_all_restarts"] = seen, total
    return list(best.values())


@dataclasses.dataclass
class Cell:
    """Mean +- std of PSNR over images for one condition."""

    cond: dict[str, Any]
    psnr: list[float]
    seconds: list[float]
    free_parameters: int | None
    n: int
    seam: list[float] = dataclasses.field(default_factory=list)
    seam_truth: list[float] = dataclasses.field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def std(self) -> float:
        return float(np.std(self.psnr))


def cells(rows: list[dict[str, Any]]) -> list[Cell]:
    """Conditions with their per-image winning PSNRs, sorted by condition."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in winners(rows):
        groups[condition(r)].append(r)
    out = []
    for k in sorted(groups, key=lambda t: tuple("" if v is None else str(v) if not isinstance(v, float) else f"{v:012.6f}"
                                                for v in t)):
        rs = sorted(groups[k], key=lambda r: r["index"])
        out.append(Cell(dict(zip(CONDITION, k)), [r["psnr"] for r in rs],
                        [r["seconds_all_restarts"] for r in rs], rs[0].get("free_parameters"), rs[0]["n"],
                        [r["seam"] for r in rs if r.get("seam") is not None],
                        [r["seam_truth"] for r in rs if r.get("seam_truth") is not None]))
    return out


def _seam(c: Cell) -> str:
    """Mean seam of the recoveries and of the truths (:func:`gs_onnx.metrics.seam`), or '-'."""
    if not c.seam:
        return "-"
    return f"{np.mean(c.seam):.2f}" + (f" ({np.mean(c.seam_truth):.2f})" if c.seam_truth else "")


def _fmt_ratio(r: float) -> str:
    return f"{r:.4g}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The tables of every preset found in ``rows``."""
    out = []
    cs = cells(rows)
    by_preset: dict[str, list[Cell]] = defaultdict(list)
    for c in cs:
        by_preset[c.cond["preset"]].append(c)
    for preset, group in by_preset.items():
        out += [f"## {preset}", ""]
        if preset == "cuts":
            out += _cuts_table(group)
        out += _pivot(group)
        extra = any(c.cond["settings"] for c in group)
        seams = any(c.seam for c in group)
        out += ["| model | variant | dataset | method | init | m/n | budget | " + ("settings | " if extra else "")
                + "PSNR dB (mean +- std) | images | free / n | s per image |" + (" seam (truth) |" if seams else ""),
                "|---" * (10 + extra + seams) + "|"]
        for c in group:
            d = c.cond
            over = f"{c.free_parameters / c.n:.3f}" if c.free_parameters else "-"
            out.append(f"| {d['model']} | {d['variant'] or '-'} | {d['dataset']} | {label(d)} | {d['init']} | "
                       f"{_fmt_ratio(d['ratio'])} | {d['plan']} | " + (f"{d['settings'] or '-'} | " if extra else "")
                       + f"{c.mean:.2f} +- {c.std:.2f} | {len(c.psnr)} | {over} | {np.mean(c.seconds):.1f} |"
                       + (f" {_seam(c)} |" if seams else ""))
        out.append("")
    samples = [r for r in rows if r.get("method") == "samples"]
    if samples:
        out += ["## samples", "", "| model | cut | samples | pixel std across samples | values outside [0, 1] | grid |",
                "|---|---|---|---|---|---|"]
        for r in sorted(samples, key=lambda r: (r["model"], r["cut"])):
            out.append(f"| {r['model']} | {r['cut']} | {r['count']} | {r['pixel_std']:.3f} | "
                       f"{100 * r['saturated']:.1f} % | {', '.join(r.get('files', []))} |")
        out.append("")
    return "\n".join(out)


def series(c: Cell) -> str:
    """The name of a condition's curve within its panel: method label, then init and variant if set."""
    d = c.cond
    parts = [label(d)]
    if d["preset"] == "init":
        parts.append(d["init"])
    if d["variant"] and d["preset"] not in ("cuts",) + PHYSICS_PRESETS:
        parts.append(d["variant"])
    if str(d.get("plan", "")).startswith("paper:"):  # the default budget is the plan; say when it was not
        parts.append("paper budget")
    if d.get("settings") and d["preset"] not in PHYSICS_PRESETS:  # there the row (the variant) names the setting
        parts.append(d["settings"])
    return ", ".join(parts)


#: Presets whose conditions are measurement settings named by the variant (``keep 0.1``, ``x4``, ``mask10``).
PHYSICS_PRESETS = ("inpaint", "superres", "physics")


def row_key(c: Cell):
    """The table row / x value of a cell: m/n, or the setting for superres (its factor) and physics (its name)."""
    d = c.cond
    if d["preset"] == "superres":
        return int(str(d["variant"]).lstrip("x"))
    if d["preset"] == "physics":
        return d["variant"]
    return d["ratio"]


def _pivot(group: list[Cell]) -> list[str]:
    """Compact tables, one per (model, dataset): a row per m/n, a column per curve, mean +- std."""
    preset = group[0].cond["preset"]
    by_dataset = preset == "raw"  # A = I: one table per model, a row per dataset
    panels: dict[tuple, dict[tuple[Any, str], Cell]] = defaultdict(dict)
    for c in group:
        model = c.cond["model"] if c.cond["preset"] != "untrained" else "trained vs untrained"
        panel = (model, "") if by_dataset else (model, c.cond["dataset"])
        row = c.cond["dataset"] if by_dataset else row_key(c)
        panels[panel][(row, series(c))] = c
    out = []
    for (model, ds), cellmap in sorted(panels.items()):
        cols = sorted({k[1] for k in cellmap})
        rows = list(dict.fromkeys(k[0] for k in cellmap)) if by_dataset or preset == "physics" \
            else sorted({k[0] for k in cellmap})
        n_img = max(len(c.psnr) for c in cellmap.values())
        where = f"{Path(model).name}, A = I, no noise" if by_dataset else f"{Path(model).name} on {ds}"
        out += [f"**{where}** (PSNR dB, mean +- std over {n_img} images)", "",
                f"| {_ROW_HEAD.get(preset, 'm/n')} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in rows:
            vals = [cellmap.get((r, col)) for col in cols]
            head = r if isinstance(r, str) else f"x{r}" if preset == "superres" else _fmt_ratio(r)
            out.append(f"| {head} | " + " | ".join(f"{v.mean:.2f} +- {v.std:.2f}" if v else "" for v in vals) + " |")
        out.append("")
    return out + ["All conditions:", ""]


_ROW_HEAD = {"raw": "images", "inpaint": "pixels kept", "superres": "factor", "physics": "measurement"}


def best_cuts(group: list[Cell]) -> dict[tuple, tuple[int, float]]:
    """{(model, dataset, ratio): (cut with the highest mean PSNR, that PSNR)} for the ``cuts`` preset."""
    best: dict[tuple, tuple[int, float]] = {}
    for c in group:
        k = (c.cond["model"], c.cond["dataset"], c.cond["ratio"])
        if k not in best or c.mean > best[k][1]:
            best[k] = (c.cond["cut"], c.mean)
    return best


def _cuts_table(group: list[Cell]) -> list[str]:
    out = ["Selected cut (highest mean PSNR on the validation images):", "",
           "| model | dataset | m/n | selected cut | PSNR dB |", "|---|---|---|---|---|"]
    for (model, ds, ratio), (cut, p) in sorted(best_cuts(group).items()):
        out.append(f"| {model} | {ds} | {_fmt_ratio(ratio)} | {cut} | {p:.2f} |")
    return out + [""]
