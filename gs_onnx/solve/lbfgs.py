"""The paper's optimiser, batched: torch.optim.LBFGS's semantics for many rows (images x restarts) at once.

Park et al. ran ``torch.optim.LBFGS`` (history 100, 25 ``step()`` calls of up to 20 iterations, their learning
rates, no line search). :func:`minimize_batch` reproduces that optimiser row by row: every row keeps its own
history, step, evaluation counts and stopping, exactly as a separate ``torch.optim.LBFGS`` would, including
the state it carries from one ``step()`` to the next and the evaluation each ``step()`` starts with;
``line_search="strong_wolfe"`` ports torch's strong-Wolfe line search.

What is batched: the vector algebra. The inverse-Hessian product uses the compact representation of
Byrd, Nocedal and Schnabel (1994) instead of the two-loop recursion (the same direction in exact arithmetic):
per iteration one pass over each row's history computes ``[S Y]^T [g, y_new, s_new]`` and one pass computes
the direction ``[S Y] c``, both as batched matrix products (BLAS on the CPU; ONNX Runtime on the device the
engine runs on with :class:`OrtAlgebra`), so that only O(history) numbers per row reach the host. The small
(history x history) algebra runs per row in float64.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
from scipy.linalg import solve_triangular

from ..errors import GSError


@dataclasses.dataclass(frozen=True)
class LBFGSSettings:
    """torch.optim.LBFGS's settings, plus the number of ``step()`` calls (the paper's outer steps).

    ``max_iter`` and ``max_eval`` are per ``step()`` (torch's meaning; ``max_eval`` defaults to
    ``max_iter * 5 // 4``). The paper: ``history=100``, ``max_iter=20``, ``steps=25``, ``lr`` 0.1 (DCGAN) or
    1 (BEGAN, VAE), no line search.
    """

    lr: float = 1.0
    max_iter: int = 20
    steps: int = 25
    max_eval: int | None = None
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    history: int = 100
    line_search: str | None = None

    def __post_init__(self):
        if not self.lr > 0:
            raise GSError(f"lbfgs: lr must be > 0, got {self.lr!r}")
        for name in ("max_iter", "steps", "history"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise GSError(f"lbfgs: {name} must be an integer >= 1, got {v!r}")
        if self.line_search not in (None, "strong_wolfe"):
            raise GSError(f"lbfgs: line_search must be None or 'strong_wolfe', got {self.line_search!r}")

    @property
    def evals_per_step(self) -> int:
        return self.max_eval if self.max_eval is not None else self.max_iter * 5 // 4


class NumpyAlgebra:
    """The batched history algebra in numpy/BLAS: ``W`` (rows, 2h, n) holds each row's s (first h) and y
    (last h) vectors in circular slots."""

    def __init__(self, rows: int, n: int, history: int, dtype=np.float32):
        self.W = np.zeros((rows, 2 * history, n), dtype=dtype)
        self.h, self.dtype = history, dtype

    def project(self, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(k, 2h, j) = W[rows] @ V[k]^T for V (k, j, n): one pass over each row's history (row by row on
        views: a fancy-indexed W[rows] would copy every history first)."""
        V = np.ascontiguousarray(V, dtype=self.dtype)
        out = np.empty((len(rows), self.W.shape[1], V.shape[1]), dtype=self.dtype)
        for j, r in enumerate(rows):
            np.matmul(self.W[r], V[j].T, out=out[j])
        return out.astype(np.float64)

    def combine(self, rows: np.ndarray, C: np.ndarray) -> np.ndarray:
        """(k, n) = W[rows]^T @ c for C (k, 2h)."""
        C = np.ascontiguousarray(C, dtype=self.dtype)
        out = np.empty((len(rows), self.W.shape[2]), dtype=self.dtype)
        for j, r in enumerate(rows):
            np.matmul(C[j], self.W[r], out=out[j])
        return out.astype(np.float64)

    def write(self, rows: np.ndarray, slots: np.ndarray, S: np.ndarray, Y: np.ndarray) -> None:
        self.W[rows, slots] = S
        self.W[rows, self.h + slots] = Y


class OrtAlgebra:
    """The same batched history algebra in ONNX Runtime, the history ``W`` resident on ``device`` (the device
    the engine runs on): three small graphs (project: ``W V^T``; combine: ``c W``; write: ScatterND of the new
    (s, y) pairs, ping-ponging between two buffers). Per iteration the O(history x n) work stays on the device;
    the O(n) vectors of the rows asked for cross once each way.

    Parameters
    ----------
    rows, n, history : the batch and the problem size
    device : "cpu" | "cuda" (see :mod:`gs_onnx.engine.runtime`)
    """

    def __init__(self, rows: int, n: int, history: int, device: str = "cpu", threads: int = 0):
        from onnx import TensorProto, helper

        from ..engine.runtime import _ort, create_session, resolve_device

        self.ort = _ort()
        self.spec = resolve_device(device)
        self.B, self.n, self.h = rows, n, history
        F, I = TensorProto.FLOAT, TensorProto.INT64

        def model(nodes, ins, outs):
            m = helper.make_model(helper.make_graph(nodes, "lbfgs", ins, outs), opset_imports=[helper.make_opsetid("", 18)])
            m.ir_version = 10
            return create_session(m.SerializeToString(), self.spec.name, threads)

        vi = helper.make_tensor_value_info
        self._project = model([helper.make_node("Transpose", ["V"], ["Vt"], perm=[0, 2, 1]),
                               helper.make_node("MatMul", ["W", "Vt"], ["P"])],
                              [vi("W", F, [rows, 2 * history, n]), vi("V", F, [rows, "j", n])],
                              [vi("P", F, [rows, 2 * history, "j"])])
        self._combine = model([helper.make_node("MatMul", ["C", "W"], ["D"])],
                              [vi("W", F, [rows, 2 * history, n]), vi("C", F, [rows, 1, 2 * history])],
                              [vi("D", F, [rows, 1, n])])
        self._write = model([helper.make_node("ScatterND", ["W", "idx", "upd"], ["W2"])],
                            [vi("W", F, [rows, 2 * history, n]), vi("idx", I, ["k", 2]), vi("upd", F, ["k", n])],
                            [vi("W2", F, [rows, 2 * history, n])])
        dev = self.spec.ort_device
        self.W = [self.ort.OrtValue.ortvalue_from_shape_and_type([rows, 2 * history, n], np.float32, dev, 0)
                  for _ in range(2)]
        zeros = np.zeros((rows, 2 * history, n), np.float32)
        for w in self.W:
            w.update_inplace(zeros)
        self.cur = 0

    def _run(self, sess, feeds: dict, out: str):
        b = sess.io_binding()
        for k, v in feeds.items():
            if isinstance(v, np.ndarray):
                b.bind_cpu_input(k, np.ascontiguousarray(v))
            else:
                b.bind_ortvalue_input(k, v)
        b.bind_output(out, self.spec.ort_device)
        sess.run_with_iobinding(b)
        return b.copy_outputs_to_cpu()[0]

    def project(self, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
        full = np.zeros((self.B, V.shape[1], self.n), np.float32)
        full[rows] = V
        return self._run(self._project, {"W": self.W[self.cur], "V": full}, "P")[rows].astype(np.float64)

    def combine(self, rows: np.ndarray, C: np.ndarray) -> np.ndarray:
        full = np.zeros((self.B, 1, 2 * self.h), np.float32)
        full[rows, 0] = C
        return self._run(self._combine, {"W": self.W[self.cur], "C": full}, "D")[rows, 0].astype(np.float64)

    def write(self, rows: np.ndarray, slots: np.ndarray, S: np.ndarray, Y: np.ndarray) -> None:
        rows, slots = np.asarray(rows, np.int64), np.asarray(slots, np.int64)
        idx = np.concatenate([np.stack([rows, slots], 1), np.stack([rows, slots + self.h], 1)])
        upd = np.concatenate([S, Y]).astype(np.float32)
        b = self._write.io_binding()
        b.bind_ortvalue_input("W", self.W[self.cur])
        b.bind_cpu_input("idx", idx)
        b.bind_cpu_input("upd", upd)
        b.bind_ortvalue_output("W2", self.W[1 - self.cur])
        self._write.run_with_iobinding(b)
        self.cur = 1 - self.cur


class _History:
    """Per-row compact-representation state: slots in chronological order and the small matrices."""

    def __init__(self, rows: int, h: int):
        self.h = h
        self.order = [[] for _ in range(rows)]            # slot indices, oldest first
        self.SY = np.zeros((rows, h, h))                   # SY[r, i, j] = s_i . y_j (slots)
        self.YY = np.zeros((rows, h, h))                   # YY[r, i, j] = y_i . y_j
        self.H_diag = np.ones(rows)


class _Row:
    """One row's torch.optim.LBFGS state (what torch keeps in ``state``) and its per-step counters."""

    def __init__(self):
        self.n_iter = 0           # state["n_iter"]: iterations over all steps
        self.func_evals = 0
        self.steps_done = 0
        self.t = None
        self.loss = None
        self.prev_loss = None
        self.done = False
        self.message = ""


def minimize_batch(evaluate: Callable[[list[int], np.ndarray], tuple[np.ndarray, np.ndarray]],
                   X0: np.ndarray, settings: LBFGSSettings = LBFGSSettings(), *,
                   iteration: Callable[[int, np.ndarray, float], None] | None = None,
                   algebra=None, dtype=np.float32, device: str = "cpu") -> list[dict]:
    """Minimise every row of ``X0`` ((B, n)) with its own torch.optim.LBFGS, all rows batched.

    ``evaluate(rows, X)`` returns (f (k,), G (k, n)) for the points X (k, n) of the rows asked for.
    ``iteration(row, x, f)`` is called after each completed iteration with the row's new point (raising
    :class:`gs_onnx.solve.stopping.EarlyStop` ends that row). ``algebra``: ``"numpy"`` (default), ``"ort"``
    (:class:`OrtAlgebra` on ``device``) or an object with the same methods. Returns per row ``{"x", "fun",
    "nit", "nfev", "message"}`` (``x`` float64).
    """
    from .stopping import EarlyStop

    X = np.array(X0, dtype=np.float64)
    B, n = X.shape
    st = settings
    if algebra is None or algebra == "numpy":
        alg = NumpyAlgebra(B, n, st.history, dtype)
    elif algebra == "ort":
        alg = OrtAlgebra(B, n, st.history, device)
    else:
        alg = algebra
    hist = _History(B, st.history)
    rows = [_Row() for _ in range(B)]
    G = np.zeros((B, n))
    D = np.zeros((B, n))
    prev_G = np.zeros((B, n))
    LS = st.line_search is not None

    def run_eval(idx: list[int], P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = evaluate(idx, P)
        return np.asarray(f, dtype=np.float64), np.asarray(g, dtype=np.float64)

    def stop_row(r: int, why: str) -> None:
        rows[r].done, rows[r].message = True, why

    def notify(r: int) -> None:
        if iteration is not None:
            try:
                iteration(r, X[r], rows[r].loss)
            except EarlyStop:
                stop_row(r, "stopped by the stopping rule")

    active = [r for r in range(B)]
    while active:
        # ---- step(): the closure at the current point, then up to max_iter iterations
        f, g = run_eval(active, X[active])
        for j, r in enumerate(active):
            rows[r].loss = f[j]
            if getattr(rows[r], "pending_notify", False):  # the last iteration of the previous step moved
                rows[r].pending_notify = False             # without evaluating: its point is evaluated now
                notify(r)
            rows[r].func_evals += 1
            rows[r].current_evals = 1
            rows[r].n_step_iter = 0
            rows[r].in_step = not (np.abs(g[j]).max() <= st.tolerance_grad)
            if not rows[r].in_step:
                rows[r].message = "gradient below tolerance_grad"
        G[active] = g
        inner = [r for r in active if rows[r].in_step and not rows[r].done]
        while inner:
            _directions(inner, rows, hist, alg, G, prev_G, D, st)
            for r in inner:
                rr = rows[r]
                prev_G[r] = G[r]
                rr.prev_loss = rr.loss
                rr.t = min(1.0, 1.0 / np.abs(G[r]).sum()) * st.lr if rr.n_iter == 1 else st.lr
            gtd = np.einsum("ij,ij->i", G[inner], D[inner])
            moving = []
            for j, r in enumerate(inner):
                if gtd[j] > -st.tolerance_change:
                    rows[r].in_step = False
                    rows[r].message = "directional derivative below tolerance_change"
                else:
                    rows[r].gtd = gtd[j]
                    moving.append(r)
            if LS:
                _strong_wolfe_batch(moving, rows, X, G, D, st, run_eval)
            else:
                for r in moving:
                    X[r] += rows[r].t * D[r]
                ev = [r for r in moving if rows[r].n_step_iter != st.max_iter]
                if ev:
                    f, g = run_eval(ev, X[ev])
                    for j, r in enumerate(ev):
                        rows[r].loss = f[j]
                        rows[r].ls_evals = 1
                    G[ev] = g
                for r in moving:
                    if rows[r].n_step_iter == st.max_iter:
                        rows[r].ls_evals = 0
            nxt = []
            for r in moving:
                rr = rows[r]
                rr.current_evals += rr.ls_evals
                rr.func_evals += rr.ls_evals
                if rr.ls_evals:
                    notify(r)
                else:
                    rr.pending_notify = True
                if rr.done:
                    continue
                opt_cond = rr.ls_evals > 0 and np.abs(G[r]).max() <= st.tolerance_grad
                if rr.n_step_iter == st.max_iter:
                    rr.message = "max_iter of the step"
                elif rr.current_evals >= st.evals_per_step:
                    rr.message = "max_eval of the step"
                elif opt_cond:
                    rr.message = "gradient below tolerance_grad"
                elif np.abs(D[r] * rr.t).max() <= st.tolerance_change:
                    rr.message = "step below tolerance_change"
                elif abs(rr.loss - rr.prev_loss) < st.tolerance_change:
                    rr.message = "loss change below tolerance_change"
                else:
                    nxt.append(r)
            inner = nxt
        for r in active:
            rows[r].steps_done += 1
        active = [r for r in active if not rows[r].done and rows[r].steps_done < st.steps]
        # rows whose budget ended on an iteration without evaluation: evaluate that point (as a torch caller
        # computing the final loss would) so that the loss and the stopping rule see it
        tail = [r for r in range(B) if not rows[r].done and rows[r].steps_done >= st.steps
                and getattr(rows[r], "pending_notify", False)]
        if tail and not active:
            f, g = run_eval(tail, X[tail])
            for j, r in enumerate(tail):
                rows[r].loss, rows[r].pending_notify = f[j], False
                rows[r].final_eval = True
                notify(r)
    return [{"x": X[r].copy(), "fun": float(rows[r].loss), "nit": rows[r].n_iter, "nfev": rows[r].func_evals,
             "message": rows[r].message or f"{st.steps} steps"} for r in range(B)]


def _directions(inner: list[int], rows, hist: _History, alg, G, prev_G, D, st: LBFGSSettings) -> None:
    """The L-BFGS update and direction for every row in ``inner`` (torch's first block of an iteration)."""
    first = [r for r in inner if rows[r].n_iter == 0]
    later = [r for r in inner if rows[r].n_iter > 0]
    for r in inner:
        rows[r].n_iter += 1
        rows[r].n_step_iter += 1
    for r in first:
        D[r] = -G[r]
    if not later:
        return
    idx = np.asarray(later)
    Yn = G[idx] - prev_G[idx]
    Sn = D[idx] * np.array([rows[r].t for r in later])[:, None]
    # one pass over the (old) history: [S Y]^T [g, y_new, s_new]
    P = alg.project(idx, np.stack([G[idx], Yn, Sn], axis=1))          # (k, 2h, 3)
    h = st.history
    coef = np.zeros((len(later), 2 * h))
    for j, r in enumerate(later):
        y, s = Yn[j], Sn[j]
        ys = float(y @ s)
        order = hist.order[r]
        if ys > 1e-10:
            if len(order) == h:
                slot = order.pop(0)
            else:
                slot = len(order)
            # new row/column of S^T Y and Y^T Y against the other slots (their dot products from the pass)
            others = order
            hist.SY[r, slot, others] = P[j, h + np.array(others, dtype=int), 2] if others else []   # s_new . y_i
            hist.SY[r, others, slot] = P[j, np.array(others, dtype=int), 1] if others else []       # s_i . y_new
            hist.YY[r, slot, others] = P[j, h + np.array(others, dtype=int), 1] if others else []
            hist.YY[r, others, slot] = hist.YY[r, slot, others]
            hist.SY[r, slot, slot] = ys
            hist.YY[r, slot, slot] = float(y @ y)
            order.append(slot)
            alg.write(np.array([r]), np.array([slot]), s[None], y[None])
            hist.H_diag[r] = ys / float(y @ y)
            P[j, slot, 0] = float(s @ G[r])
            P[j, h + slot, 0] = float(y @ G[r])
        # direction d = -H g by the compact representation over the slots in chronological order
        if not order:
            coef[j] = 0.0
            continue
        o = np.array(order, dtype=int)
        gamma = hist.H_diag[r]
        a = P[j, o, 0]                       # S^T g
        b = P[j, h + o, 0]                   # Y^T g
        SY = hist.SY[r][np.ix_(o, o)]
        R = np.triu(SY)
        Dg = np.diag(np.diag(SY))
        YY = hist.YY[r][np.ix_(o, o)]
        Ria = solve_triangular(R, a, lower=False)                      # R^{-1} a
        top = solve_triangular(R, (Dg + gamma * YY) @ Ria - gamma * b, lower=False, trans="T")
        bottom = -Ria
        c = np.zeros(2 * h)
        c[o] = -top
        c[h + o] = -gamma * bottom
        coef[j] = c
    Dn = alg.combine(idx, coef)
    gam = np.array([hist.H_diag[r] for r in later])
    D[idx] = Dn - gam[:, None] * G[idx]


def _strong_wolfe_batch(moving: list[int], rows, X, G, D, st: LBFGSSettings, run_eval) -> None:
    """torch's ``_strong_wolfe`` for each moving row; the rows' trial evaluations are batched. Sets x, g,
    loss and ``ls_evals`` of each row (torch's ``self._add_grad(t, d)`` after the search)."""
    gens = {}
    for r in moving:
        rr = rows[r]
        gens[r] = _strong_wolfe(rr.loss, G[r].copy(), rr.t, D[r], rr.gtd,
                                max_ls=st.evals_per_step - rr.current_evals, tolerance_change=st.tolerance_change)
    pending = {r: next(gens[r]) for r in moving}
    while pending:
        idx = list(pending)
        P = np.stack([X[r] + pending[r] * D[r] for r in idx])
        f, g = run_eval(idx, P)
        nxt = {}
        for j, r in enumerate(idx):
            try:
                nxt[r] = gens[r].send((f[j], g[j]))
            except StopIteration as e:
                loss, g_new, t, evals = e.value
                rr = rows[r]
                rr.loss, rr.t, rr.ls_evals = loss, t, evals
                G[r] = g_new
                X[r] += t * D[r]
        pending = nxt


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch.optim.lbfgs._cubic_interpolate."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(f, g, t, d, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch.optim.lbfgs._strong_wolfe as a generator: yields step sizes to evaluate at x + t d, receives
    (f, g) there, returns (f_new, g_new, t, evaluations)."""
    d_norm = np.abs(d).max()
    f_new, g_new = yield t
    ls_func_evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = yield t
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = yield t
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals
