"""Figures like the paper's, from a results file (matplotlib: ``pip install 'gs-onnx[plot]'``).

* ``cs``, ``baselines``, ``untrained``, ``init``: PSNR vs m/n (x from 0 to 0.5), mean +- 1 std bands, one
  panel per model and dataset;
* ``raw``: PSNR per dataset, c = 0 vs the cut, mean +- std bars (A = I: optimisation vs representation error);
* ``cuts``: PSNR vs the cut index per ratio, the selected cut marked;
* ``samples``: the sample grids of every cut stacked, one figure per model.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GSError
from ..io.paths import confined, regular_file
from .report import PHYSICS_PRESETS, best_cuts, cells, label, markdown, row_key, series


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GSError("plots need matplotlib: pip install 'gs-onnx[plot]'") from None
    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _style(ax, xlabel: str | None, title: str, grid_axis: str = "both") -> None:
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis=grid_axis)
    ax.legend(fontsize=8)


def _curves(plt, group, preset: str, out: Path) -> Path:
    panels: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for c in group:
        model = Path(c.cond["model"]).name
        if preset == "untrained":  # the twin is another model: one panel per trained model and dataset
            model = next((Path(o.cond["model"]).name for o in group if o.cond["variant"] == "trained"), model)
        panels[(model, c.cond["dataset"])][series(c)].append(c)
    keys = sorted(panels)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for name, cs in sorted(panels[k].items()):
            cs = sorted(cs, key=row_key)
            x = np.array([row_key(c) for c in cs])
            m = np.array([c.mean for c in cs])
            s = np.array([c.std for c in cs])
            (line,) = ax.plot(x, m, marker="o", ms=3, label=name)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2)
        if preset == "superres":
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({row_key(c) for c in group}), [f"x{f}" for f in sorted({row_key(c) for c in group})])
        elif preset == "inpaint":
            ax.set_xlim(0, 1)
        else:
            ax.set_xlim(0, 0.5)
        n_img = max(len(c.psnr) for cs in panels[k].values() for c in cs)
        xlabel = {"superres": "downsampling factor", "inpaint": "fraction of pixels kept"}.get(preset, "m / n")
        _style(ax, xlabel, f"{k[0]} on {k[1]} ({n_img} images)")
    return _save(plt, fig, out / f"{preset}.png")


def _raw(plt, group, out: Path) -> Path:
    models = sorted({c.cond["model"] for c in group})
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        cs = [c for c in group if c.cond["model"] == model]
        datasets = list(dict.fromkeys(c.cond["dataset"] for c in cs))
        series = sorted({label(c.cond) for c in cs})
        w = 0.8 / len(series)
        for j, sname in enumerate(series):
            vals = [next((c for c in cs if c.cond["dataset"] == d and label(c.cond) == sname), None) for d in datasets]
            ax.bar(np.arange(len(datasets)) + j * w, [v.mean if v else 0 for v in vals], w,
                   yerr=[v.std if v else 0 for v in vals], capsize=3, label=sname)
        ax.set_xticks(np.arange(len(datasets)) + w * (len(series) - 1) / 2, datasets)
        _style(ax, None, f"{model}: A = I, no noise", "y")
    return _save(plt, fig, out / "raw.png")


def _settings(plt, group, out: Path) -> Path:
    """``physics``: one bar group per measurement setting, a bar per method, a panel per model and dataset."""
    panels: dict[tuple, list] = defaultdict(list)
    for c in group:
        panels[(Path(c.cond["model"]).name, c.cond["dataset"])].append(c)
    keys = sorted(panels)
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 3.6 * len(keys)), squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        cs = panels[k]
        settings = list(dict.fromkeys(c.cond["variant"] for c in cs))
        names = sorted({series(c) for c in cs})
        w = 0.8 / len(names)
        for j, name in enumerate(names):
            vals = [next((c for c in cs if c.cond["variant"] == st and series(c) == name), None) for st in settings]
            ax.bar(np.arange(len(settings)) + j * w, [v.mean if v else 0 for v in vals], w,
                   yerr=[v.std if v else 0 for v in vals], capsize=3, label=name)
        ax.set_xticks(np.arange(len(settings)) + w * (len(names) - 1) / 2, settings)
        n_img = max(len(c.psnr) for c in cs)
        _style(ax, None, f"{k[0]} on {k[1]} ({n_img} images)", "y")
    return _save(plt, fig, out / "physics.png")


def _cuts(plt, group, out: Path) -> Path:
    panels: dict[tuple, list] = defaultdict(list)
    for c in group:
        panels[(c.cond["model"], c.cond["dataset"])].append(c)
    best = best_cuts(group)
    keys = sorted(panels)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for ax, k in zip(axes[0], keys):
        for ratio in sorted({c.cond["ratio"] for c in panels[k]}):
            cs = sorted((c for c in panels[k] if c.cond["ratio"] == ratio), key=lambda c: c.cond["cut"])
            x = [c.cond["cut"] for c in cs]
            m = np.array([c.mean for c in cs])
            s = np.array([c.std for c in cs])
            (line,) = ax.plot(x, m, marker="o", label=f"m/n = {ratio:g}")
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2)
            bc, bp = best[(k[0], k[1], ratio)]
            ax.plot([bc], [bp], marker="*", ms=14, color=line.get_color())
        ax.set_xticks(sorted({c.cond["cut"] for c in panels[k]}))
        _style(ax, "cut index c", f"{k[0]} on {k[1]} (star: selected cut)")
    return _save(plt, fig, out / "cuts.png")


def _samples(plt, rows: list[dict[str, Any]], folder: Path, out: Path) -> list[Path]:
    from PIL import Image

    paths = []
    for model in sorted({r["model"] for r in rows}):
        rs = sorted((r for r in rows if r["model"] == model and r.get("files")), key=lambda r: r["cut"])
        if not rs:
            continue
        fig, axes = plt.subplots(len(rs), 1, figsize=(10, 1.4 * len(rs) + 0.4), squeeze=False)
        for ax, r in zip(axes[:, 0], rs):
            ax.imshow(np.asarray(Image.open(regular_file(confined(folder, r["files"][0], "a results row's file"),
                                                         "a results row's file"))))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"c = {r['cut']}", rotation=0, ha="right", va="center")
        fig.suptitle(f"{model}: samples of the cut generator (inputs N(0, 1))")
        paths.append(_save(plt, fig, out / f"samples_{Path(model).name}.png"))
    return paths


def plot(folder: str | Path, rows: list[dict[str, Any]], out: str | Path | None = None
         ) -> tuple[list[Path], str | None]:
    """Write ``summary.md`` and every figure the rows allow to ``out`` (default: ``folder``).

    Returns the paths written and a note (or None): without matplotlib (an optional extra) the summary is
    written, no figure is, and the note says how to get them."""
    folder = Path(folder)
    out = Path(out) if out else folder
    out.mkdir(parents=True, exist_ok=True)
    if not rows:
        raise GSError(f"no results rows in {folder}")
    written = []
    md = out / "summary.md"
    from . import budget

    rest = [r for r in rows if r.get("preset") != "budget"]
    text = "# Results\n\n"
    if rest:
        text += ("Mean +- std over images of the winning restart's PSNR (lowest measurement error), written by "
                 "`gs-experiment plot`.\n\n" + markdown(rest))
    if len(rest) < len(rows):
        text += "# Stopping: fixed budgets and held-out rules\n\n" + budget.markdown(rows)
    md.write_text(text, encoding="utf-8")
    written.append(md)
    try:
        plt = _plt()
    except GSError as e:
        return written, f"{e}; summary.md is written, the figures are not (gs-experiment plot redoes them)"
    if len(rest) < len(rows):
        written += budget.figure(plt, rows, out)
    rows = rest
    by_preset: dict[str, list] = defaultdict(list)
    for c in cells(rows) if rows else []:
        by_preset[c.cond["preset"]].append(c)
    for preset, group in by_preset.items():
        if preset == "raw":
            written.append(_raw(plt, group, out))
        elif preset == "cuts":
            written.append(_cuts(plt, group, out))
        elif preset == "physics":
            written.append(_settings(plt, group, out))
        else:
            written.append(_curves(plt, group, preset, out))
    samples = [r for r in rows if r.get("method") == "samples"]
    if samples:
        written += _samples(plt, samples, folder, out)
    return written, None
