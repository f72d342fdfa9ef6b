"""Adam for many rows at once, torch.optim.Adam's update (no weight decay, no amsgrad), in float64.

Every row (images x restarts) keeps its own moments and iteration count; one evaluation per iteration. The
recovery graph (gs_onnx.solve.recovery_graph, ``optimizer="adam"``) runs the same update inside an ONNX Loop;
this is its host-driven twin (``gs-recover --optimizer adam``).

Examples
--------
>>> import numpy as np
>>> res = minimize_adam_batch(lambda rows, X: ((X ** 2).sum(1), 2 * X), np.ones((2, 3)),
...                           AdamSettings(lr=0.1, iterations=300))
>>> [round(float(np.abs(r["x"]).max()), 3) < 0.05 for r in res], res[0]["nit"]
([True, True], 300)
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..errors import GSError


@dataclasses.dataclass(frozen=True)
class AdamSettings:
    """torch.optim.Adam's numbers and the iterations per restart."""

    lr: float = 0.1
    iterations: int = 200
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if not self.lr > 0:
            raise GSError(f"adam: lr must be > 0, got {self.lr!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, (int, np.integer)) or self.iterations < 1:
            raise GSError(f"adam: iterations must be an integer >= 1, got {self.iterations!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise GSError("adam: betas must be in [0, 1) and eps > 0")


def minimize_adam_batch(evaluate: Callable[[list[int], np.ndarray], tuple[np.ndarray, np.ndarray]],
                        X0: np.ndarray, settings: AdamSettings = AdamSettings(), *,
                        iteration: Callable[[int, np.ndarray, float], None] | None = None) -> list[dict]:
    """Minimise every row of ``X0`` ((B, n)) with its own Adam, all rows evaluated together.

    ``evaluate(rows, X)`` returns (f (k,), G (k, n)); ``iteration(row, x, f)`` is called after every iteration
    with the row's new point (raising :class:`gs_onnx.solve.stopping.EarlyStop` ends that row). Returns per row
    ``{"x", "fun", "nit", "nfev", "message"}``."""
    from .stopping import EarlyStop

    st = settings
    X = np.array(X0, dtype=np.float64)
    B = len(X)
    M = np.zeros_like(X)
    V = np.zeros_like(X)
    nit = np.zeros(B, int)
    msg = [f"{st.iterations} iterations"] * B
    active = list(range(B))
    f, G = (np.asarray(v, np.float64) for v in evaluate(active, X[active]))
    F = np.array(f, dtype=np.float64)
    G = np.array(G, dtype=np.float64)
    nfev = np.ones(B, int)
    for t in range(1, st.iterations + 1):
        if not active:
            break
        a = np.asarray(active)
        M[a] = st.beta1 * M[a] + (1 - st.beta1) * G[a]
        V[a] = st.beta2 * V[a] + (1 - st.beta2) * G[a] * G[a]
        denom = np.sqrt(V[a]) / np.sqrt(1 - st.beta2 ** t) + st.eps
        X[a] -= (st.lr / (1 - st.beta1 ** t)) * M[a] / denom
        f, g = evaluate(active, X[a])
        F[a], G[a] = np.asarray(f, np.float64), np.asarray(g, np.float64)
        nfev[a] += 1
        still = []
        for r in active:
            nit[r] += 1
            try:
                if iteration is not None:
                    iteration(r, X[r], float(F[r]))
                still.append(r)
            except EarlyStop:
                msg[r] = "stopped by the stopping rule"
        active = still
    return [{"x": X[r].copy(), "fun": float(F[r]), "nit": int(nit[r]), "nfev": int(nfev[r]), "message": msg[r]}
            for r in range(B)]
