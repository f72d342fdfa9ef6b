"""``gs-pnp``: both priors, the generator and the denoiser, chosen per image by held-out measurements.

Generator Surgery runs first (its plan, its held-out rows). Then one batch of plug-and-play runs
(:func:`gs_onnx.solve.pnp.pnp_batch`) shares every application of A: per image, plain PnP from grey (the denoiser
alone), PnP started from the generator's image ``G`` and anchored to it, ``gamma ||x - G||^2``, at a few anchor
weights, and, for the dense Gaussian, plain PnP with a classical denoiser that knows nothing of faces
(``pnp-dct``: :mod:`gs_onnx.engine.dct_denoiser`), for images the face-trained network does not know. Each image keeps, among these and ``G`` itself, the candidate with the lowest error on its held-out rows
(the rows GS held out; never the truth), then a few iterations on every row polish it. Where the measurements say
the generator helps (few measurements) the anchored candidates or G win; where they say it does not, plain PnP
wins: the default is then PnP.
"""
from __future__ import annotations

import numpy as np

from ...physics.datafit import measurement_error
from ..registry import Method, register
from ..pnp import (POLISH, TIE, anchored_plan, candidates, held_out_rule, noise_level, polish_for, polish_kernel,
                   polish_sigma_for, wants_noise)
from ..priors import classical_candidates
from ..settings import Settings
from .gs import GS_SETTINGS, RefinedGS

def gs_settings(sidecar: dict, s: Settings) -> Settings:
    """The settings of gs-pnp's GS stage: ``s``, its iterations capped by the anchored plan's ``gs_max_iter`` where
    the operator's plan has one and ``--max-iter`` is not given (GS is a candidate and an anchor here, not the
    answer: past a point its iterations cost more time than they bring)."""
    import dataclasses

    from ..settings import model_for, recovery_plan

    kind = (sidecar.get("operator") or {}).get("type")
    cap = anchored_plan(kind).get("gs_max_iter")
    if cap is None or s.max_iter is not None:
        return s
    _, budget, _ = recovery_plan(model_for(sidecar, s), s, kind, True)
    return dataclasses.replace(s, max_iter=min(int(cap), budget.max_iter)) if budget.max_iter > cap else s


class GSPnPSolver(RefinedGS):
    """GS, then plain and generator-anchored PnP candidates, one chosen per image by held-out error."""

    warm_start = False

    def __init__(self, method: str, y: np.ndarray, sidecar: dict, s: Settings, op=None):
        from ..lasso import lipschitz
        from ..pnp import HOLDOUT, PATIENCE, plan_for
        from ..priors import denoiser_for

        if op is not None:
            sidecar = {**sidecar, "operator": op.describe()}
        super().__init__(method, y, sidecar, gs_settings(sidecar, s), op)
        self.stop = held_out_rule(self.stop, self.budget.max_iter)
        self.header["stopping"] = self.stop.describe()
        kind = (self.op.describe() or {}).get("type")
        self.pnp_plan, self.anchor_plan, self.polish = plan_for("onnx", kind), anchored_plan(kind), polish_for(kind)
        self.kind, self.sidecar = kind, sidecar
        self.polish_sigma = None if wants_noise(kind) else polish_sigma_for(kind)   # "noise": per image
        self.polish_kernel = polish_kernel(self.op)
        self.holdout = self.stop.holdout if self.stop.uses_holdout else HOLDOUT
        self.patience = PATIENCE
        self.denoiser = denoiser_for("onnx", s.denoiser, s.device, s.threads, s.models_dir)
        self.classical = classical_candidates(kind, s.device, s.threads)
        self.L = lipschitz(self.op)
        self.header["pnp"] = {"denoiser": self.denoiser.describe(), "plain": self.pnp_plan,
                              **({"classical": {name: {"denoiser": d.describe(), "plan": p}
                                                for name, d, p in self.classical}} if self.classical else {}),
                              "anchored": self.anchor_plan, "holdout": self.holdout, "polish": self.polish,
                              **({"polish_sigma": self.polish_sigma} if self.polish_sigma else
                                 {"polish_sigma": "noise"} if wants_noise(kind) else {}),
                              **({"polish_kernel": self.polish_kernel.tolist()} if self.polish_kernel is not None
                                 else {})}
        self.how += " + PnP"

    def refine_images(self, images, fields, Y, first):
        from ..stopping import holdout_mask

        B = len(images)
        Y = np.asarray(Y, np.float32).reshape(B, -1)
        W = np.stack([holdout_mask(self.op.m, self.holdout, self.s.seed + first + j) for j in range(B)])
        sig = self.polish_sigma
        if wants_noise(self.kind):   # the plan polishes at each image's noise level
            sig = np.array([noise_level(self.sidecar, Y[j], self.op) for j in range(B)])
        outs, infos = refine(self.op, Y, np.stack(images), W, self.denoiser, self.pnp_plan, self.anchor_plan,
                             self.L, self.patience, self.polish, sig, self.polish_kernel, self.classical)
        results = []
        for j, (image, info) in enumerate(zip(outs, infos)):
            self.last_gs_image = images[j]  # the generator's image (gs-experiment reports its PSNR beside)
            f = dict(fields[j], gs_measurement_error=fields[j]["measurement_error"],
                     measurement_error=measurement_error(self.op, image, Y[j]), pnp=info)
            results.append((image, f))
        return results


def refine(op, Y: np.ndarray, G: np.ndarray, W: np.ndarray, denoiser, pnp_plan: dict, anchor_plan: dict, L: float,
           patience: int, polish: int = POLISH, polish_sigma: float | np.ndarray | None = None,
           polish_kernel: np.ndarray | None = None,
           extra: list[tuple[str, object, dict]] = ()) -> tuple[list[np.ndarray], list[dict]]:
    """The candidates for images measured as ``Y`` ((B, m)) whose generator images are ``G`` ((B, C, H, W)), held
    out rows ``W`` ((B, m), 0 where held out): plain PnP and anchored PnP with ``denoiser``, and plain PnP with each
    ``extra`` (name, denoiser, plan) (:func:`gs_onnx.solve.priors.classical_candidates`), in one batch; the lowest
    held-out error per image among them and G, the chosen PnP run polished on every row (``polish`` iterations at
    ``polish_sigma`` (one level, or one per image), or the chosen run's last level, with the chosen run's denoiser,
    the data gradient smoothed by ``polish_kernel`` where given: :func:`gs_onnx.solve.pnp.smoothing`). Returns the
    images (C, H, W) in [0, 1] and per image {chosen, held_out per candidate, iterations per candidate}."""
    from ..pnp import Schedule, pnp_batch, smoothing

    G = np.asarray(G, np.float32)
    B, shape = len(G), tuple(G.shape[1:])
    n = int(np.prod(shape))
    G = G.reshape(B, n)
    # (name, anchor weight or None, denoiser, plan) of every candidate, in the order the graph's rows follow
    cands = [(name, g, denoiser, anchor_plan if g is not None else pnp_plan) for name, g in candidates(anchor_plan)]
    cands += [(name, None, d, plan) for name, d, plan in extra]
    K = len(cands)
    scheds = [Schedule(int(p["iterations"]), float(p["sigma_max"]), float(p["sigma_min"])) for _, _, _, p in cands]
    rows = [(j, c) for j in range(B) for c in range(K)]
    sched = [scheds[c] for _, c in rows]
    gam = np.array([cands[c][1] or 0.0 for _, c in rows])
    steps = np.array([float(cands[c][3].get("step", 1.0)) for _, c in rows])
    dens = [cands[c][2] for _, c in rows]
    x0 = np.stack([G[j] for j, _ in rows])
    plain_rows = [r for r, (_, c) in enumerate(rows) if cands[c][1] is None]
    if plain_rows:  # plain PnP starts one gradient step from grey, as --method pnp does
        js = [rows[r][0] for r in plain_rows]
        grey = np.full((len(js), n), 0.5, np.float32)
        r = np.asarray(op.forward(grey), np.float32) - Y[js]
        tau = (steps[plain_rows] / L).astype(np.float32)[:, None]
        x0[plain_rows] = np.clip(grey - tau * np.asarray(op.adjoint(r * W[js]), np.float32), 0.0, 1.0)
    idx = [j for j, _ in rows]
    res = pnp_batch(op, Y[idx], shape, dens if extra else denoiser, sched, x0=x0, anchor=G[idx], gamma=gam, w=W[idx],
                    lipschitz=L, step=steps, patience=patience)
    r = (np.asarray(op.forward(G), np.float32) - Y).astype(np.float64) ** 2
    held_gs = (r * (1.0 - W)).sum(axis=1) / np.maximum((1.0 - W).sum(axis=1), 1.0)
    infos, chosen = [], []
    for j in range(B):
        errs = {"gs": float(held_gs[j]), **{cands[c][0]: res[j * K + c].held_out for c in range(K)}}
        best = min(errs, key=lambda k: np.inf if errs[k] is None else errs[k] * (1.0 if k == "gs" else 1.0 + TIE))
        chosen.append(None if best == "gs" else next(c for c in range(K) if cands[c][0] == best))
        infos.append({"chosen": best, "held_out": errs,
                      "iterations": {cands[c][0]: res[j * K + c].iterations for c in range(K)}})
    out = [G[j].reshape(shape) if c is None else res[j * K + c].image for j, c in enumerate(chosen)]
    pol = [(j, c) for j, c in enumerate(chosen) if c is not None]
    if pol and polish:
        own = np.broadcast_to(np.asarray(polish_sigma if polish_sigma is not None else np.nan, np.float64), (B,))
        last = [float(own[j]) if np.isfinite(own[j]) else scheds[c].sigma_min for j, c in pol]
        pres = pnp_batch(op, Y[[j for j, _ in pol]], shape, [cands[c][2] for _, c in pol] if extra else denoiser,
                         [Schedule(polish, s_, s_) for s_ in last],
                         x0=np.stack([out[j].reshape(n) for j, _ in pol]), anchor=G[[j for j, _ in pol]],
                         gamma=np.array([cands[c][1] or 0.0 for _, c in pol]), lipschitz=L,
                         step=np.array([steps[j * K + c] for j, c in pol]),
                         precondition=None if polish_kernel is None else smoothing(polish_kernel, shape))
        for (j, _), pr in zip(pol, pres):
            out[j] = pr.image
    return [np.clip(o, 0.0, 1.0).astype(np.float32) for o in out], infos


def make(y, sidecar, s, op=None):
    from .gs_graph import GRAPH_ENGINE

    if s.engine == GRAPH_ENGINE:
        from .gs_graph import GraphSolver

        return GraphSolver(y, sidecar if op is None else {**sidecar, "operator": op.describe()},
                           gs_settings(sidecar if op is None else {**sidecar, "operator": op.describe()}, s), op,
                           method="gs-pnp")
    return GSPnPSolver("gs-pnp", y, sidecar, s, op)


METHOD = register(Method(
    "gs-pnp", "GS, then plug-and-play with the ONNX denoiser, plain or anchored to GS's image (and, for the dense "
              "Gaussian, with the DCT denoiser), chosen per image by held-out measurements", make,
    settings=GS_SETTINGS | {"denoiser"}, generator=True, restarts=True, planned=True, batched=True,
    label="GS + PnP"))
