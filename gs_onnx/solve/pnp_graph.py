"""gs-pnp's second stage in the recovery graph: plug-and-play candidates, the held-out choice and the polish as ONNX
nodes after the GS loop, so that a recovery folder of the default method runs in any ONNX Runtime.

:func:`with_pnp_stage` takes a recovery graph (:func:`gs_onnx.solve.recovery_graph.recovery_model`) and a verified
denoiser, and returns the graph extended: GS's image becomes ``gs_image``; once GS has finished (``running`` false),
an ``If`` runs what :func:`gs_onnx.solve.methods.gs_pnp.refine` runs on the host, on the same numbers:

* a ``Loop`` of :func:`gs_onnx.solve.pnp.pnp_batch` over the candidate rows (plain PnP from one gradient step from
  grey, PnP anchored to ``gs_image``), the denoiser's nodes inlined in its body, each row with its own noise levels
  (``pnp_sigma``), length (``pnp_iterations``), anchor weight (``pnp_gamma``) and step (``pnp_tau``), each keeping its
  iterate of lowest held-out error (the rows ``w`` holds out) and stopping ``pnp_patience`` iterations past its
  schedule without a better one; each pass applies A to the rows still running and A^T and each denoiser to the
  rows that step on only (``NonZero``, ``Gather``, ``ScatterND``), as ``pnp_batch`` does;
* the choice: the lowest held-out error among ``gs_image`` and the candidates (``pnp_held_out``, ``pnp_chosen``: 0
  is GS, r > 0 candidate r - 1);
* the polish: ``pnp_polish`` iterations on every row from the chosen iterate at its last noise level, or at the
  plan's polish level where it sets one (a constant of the graph, ``plan.polish_sigma`` in ``recovery.json``), the
  data gradient smoothed where the plan says so (x4: the block tent of ``plan.polish_kernel``, constants of the graph;
  :func:`gs_onnx.solve.pnp.smoothing`).

While GS is still running (a chunked run), ``image`` is ``gs_image`` and the PnP outputs are empty.
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError
from ..physics.onnxform import DOUBLE, FLOAT, INT64, Builder, onnx_modules
from .pnp import (FLIP, PATIENCE, TIE, Schedule, anchored_plan, candidates, plan_for, polish_for, polish_kernel,
                  polish_sigma_for)

BOOL = 9

#: The stage's inputs (name: (dtype, shape); R the candidate rows, T the longest schedule).
INPUTS = {
    "pnp_sigma": ("float32", ("R", "T")), "pnp_iterations": ("int64", ("R",)), "pnp_gamma": ("float32", ("R",)),
    "pnp_tau": ("float32", ("R",)), "pnp_from_grey": ("bool", ("R",)), "pnp_patience": ("int64", ()),
    "pnp_polish": ("int64", ()),
}
#: The stage's input when the plan has classical candidates (:func:`gs_onnx.solve.priors.classical_candidates`).
DENOISER_INPUT = {"pnp_denoiser": ("int64", ("R",))}
OUTPUTS = {"gs_image": ("float32", ("C", "H", "W")), "gs_residual": ("float64", ()), "pnp_held_out": ("float64", ("R+1",)),
           "pnp_chosen": ("int64", ()), "pnp_rows_iterations": ("int64", ("R",))}
MEANING = {
    "pnp_sigma": "per candidate row, the denoiser's noise level at each iteration (the schedule, padded with its "
                 "last value)",
    "pnp_iterations": "per candidate row, the length of its schedule",
    "pnp_gamma": "per candidate row, the weight of the pull towards GS's image (0: plain PnP)",
    "pnp_tau": "per candidate row, the gradient step 1 / (||A||^2 + gamma)",
    "pnp_from_grey": "per candidate row: true starts one gradient step from grey (plain PnP), false from GS's image",
    "pnp_patience": "iterations past its schedule without a lower held-out error before a row stops",
    "pnp_denoiser": "per candidate row, its denoiser: 0 the network (plan.pnp.denoiser), k > 0 the k-th of "
                    "plan.pnp.classical (its nodes are the graph's own, built from no file)",
    "pnp_polish": "iterations on every measurement from the chosen candidate at its last noise level, or at the "
                  "plan's polish_sigma where it has one (0: none)",
    "gs_image": "GS's image (the first stage's winner) in [0, 1]",
    "gs_residual": "||A gs_image - y||",
    "pnp_held_out": "held-out error of GS's image, then of each candidate's kept iterate",
    "pnp_chosen": "0: GS's image was kept; r > 0: candidate r - 1 (then polished)",
    "pnp_rows_iterations": "iterations each candidate row ran",
}


def _denoiser_inits(den_model, prefix: str):
    """The denoiser's initializers, renamed with ``prefix`` (one copy in the main graph, read by every instance)."""
    onnx, _, _ = onnx_modules()
    out = []
    for t in den_model.graph.initializer:
        c = onnx.TensorProto()
        c.CopyFrom(t)
        c.name = prefix + t.name
        out.append(c)
    return out


def _denoiser_nodes(den_model, init_prefix: str, prefix: str, x: str, sigma: str, out: str):
    """One instance of the denoiser's nodes: its values named with ``prefix``, its weights read from the
    initializers named with ``init_prefix``, reading ``x`` (B, C, H, W) and ``sigma`` (B, 1, 1, 1), writing ``out``."""
    rename = {"x": x, "sigma": sigma}
    rename.update({t.name: init_prefix + t.name for t in den_model.graph.initializer})
    outs = {o.name for o in den_model.graph.output}
    nodes = []
    for node in den_model.graph.node:
        c = _copy(node)
        c.input[:] = [rename.get(v, prefix + v) if v else v for v in node.input]
        c.output[:] = [out if o in outs else prefix + o for o in node.output]
        c.name = prefix + (node.name or node.op_type)
        nodes.append(c)
    return nodes


def with_pnp_stage(model, form, den_model, image_shape: tuple[int, int, int], m: int, flip: bool = False,
                   polish_sigma: float | None = None, polish_kernel: np.ndarray | None = None, classical=()):
    """``model`` (a recovery graph) extended by gs-pnp's PnP stage (see the module's docstring); ``form``: the
    operator's ONNX form (the same nodes the GS stage uses: its inputs are already the graph's); ``den_model``: the
    denoiser's verified ModelProto (:func:`gs_onnx.generator.manifest.load_graph`); ``flip``: its mirror
    self-ensemble (as :class:`gs_onnx.engine.denoiser.Denoiser` with ``flip``); ``polish_sigma``, ``polish_kernel``:
    the polish's level and gradient smoothing (as :func:`gs_onnx.solve.methods.gs_pnp.refine`); ``classical``: the
    ModelProtos of the classical candidates' denoisers (same inputs and output as the network; never mirrored),
    chosen per row by the input ``pnp_denoiser``."""
    onnx, helper, _ = onnx_modules()
    C, H, Wd = image_shape
    n = C * H * Wd
    g = model.graph
    if not any(o.name == "image" for o in g.output):
        raise GSError("not a recovery graph: it has no output 'image'")
    for node in g.node:   # GS's image and residual become gs_image and gs_residual
        node.output[:] = [{"image": "gs_image", "residual": "gs_residual"}.get(o, o) for o in node.output]
    den_inits = _denoiser_inits(den_model, "den/")
    for k, cm in enumerate(classical):
        den_inits += _denoiser_inits(cm, f"cls{k}/")

    b = Builder(lift=True, prefix="pnp/")   # the operator's tables are the graph's op_* inputs, as the GS stage's
    i64 = lambda v: b.const(np.asarray(v, np.int64), "i")   # noqa: E731
    f32 = lambda v: b.const(np.float32(v), "f")             # noqa: E731
    f64 = lambda v: b.const(np.float64(v), "d")             # noqa: E731
    ax1 = i64([1])

    def col(v):
        return b.op("Unsqueeze", [v, ax1], "col")

    def where(c, a, e):
        return b.op("Where", [c, a, e], "where")

    def held_error(Ax):  # (rows, m) -> (rows,) float64: mean squared residual on the rows w holds out
        r = b.op("Cast", [b.op("Sub", [Ax, "y"], "r")], "r64", to=DOUBLE)
        hold = b.op("Cast", [b.op("Sub", [f32(1.0), "w"], "hold")], "hold64", to=DOUBLE)
        num = b.op("ReduceSum", [b.op("Mul", [b.op("Mul", [r, r], "r2"), hold], "r2h"), ax1], "num", keepdims=0)
        den = b.op("Max", [b.op("ReduceSum", [hold, ax1], "nh", keepdims=0), f64(1.0)], "nhs")
        return b.op("Div", [num, den], "err")

    def mirror(t):  # reverse the last axis: a Gather, not a Slice with step -1 (onnxruntime-web's WebGPU Slice
        # returned a wrong shape for that one and the Concat after it failed: "non concat dimensions must match")
        return b.op("Gather", [t, i64(np.arange(Wd - 1, -1, -1))], "mirror", axis=3)

    def only(rows, fn, ins, like):
        """``fn(*ins)`` on the rows that ``rows`` (bool (R,)) marks, the others of the result (R, ...) holding
        ``like``'s: the denoisers and A run on the rows that need them only, as pnp_batch's do (finished rows, the
        other denoiser's rows). Where no row is marked, ``fn`` runs on row 0 into a spare last row that is then
        dropped (so that no kernel sees an empty batch)."""
        idx = b.op("Reshape", [b.op("NonZero", [rows], "nz"), i64([-1])], "idx")
        k = b.op("Max", [b.op("Shape", [idx], "k"), i64([1])], "k1")
        R = b.op("Shape", [rows], "nrows")
        take = b.op("Slice", [b.op("Concat", [idx, i64([0])], "take0", axis=0), i64([0]), k], "take")
        put = b.op("Slice", [b.op("Concat", [idx, R], "put0", axis=0), i64([0]), k], "put")
        out = fn(*[b.op("Gather", [t, take], "sel", axis=0) for t in ins])
        buf = b.op("Concat", [like, b.op("Gather", [like, i64([0])], "l0", axis=0)], "buf", axis=0)
        buf = b.op("ScatterND", [buf, b.op("Unsqueeze", [put, ax1], "put2"), out], "scat")
        return b.op("Slice", [buf, i64([0]), R, i64([0])], "unbuf")

    def inline(model, init_prefix, tag, Zs, ss):  # one copy of a denoiser's nodes: (k, n), (k,) -> (k, C, H, W)
        x4 = b.op("Reshape", [Zs, b.const(np.array([-1, C, H, Wd], np.int64), "s4")], "dx")
        s4 = b.op("Reshape", [ss, b.const(np.array([-1, 1, 1, 1], np.int64), "s1")], "ds")
        if model is den_model and flip:  # the image and its mirror image in one batch (Denoiser(flip=True))
            x4 = b.op("Concat", [x4, mirror(x4)], "x2", axis=0)
            s4 = b.op("Concat", [s4, s4], "s2", axis=0)
        out = b.fresh("dout")
        b.nodes += _denoiser_nodes(model, init_prefix, b.fresh(tag) + "/", x4, s4, out)
        return out

    def network(Zs, ss):  # (k, n), (k,) -> (k, n): the network's denoising (and its mirror image's, averaged)
        dout = inline(den_model, "den/", "den", Zs, ss)
        if flip:
            half = b.op("Shape", [ss], "rows")
            first = b.op("Slice", [dout, i64([0]), half, i64([0])], "d1")
            second = b.op("Slice", [dout, half, i64([np.iinfo(np.int64).max]), i64([0])], "d2")
            dout = b.op("Mul", [b.op("Add", [first, mirror(second)], "dsum"), f32(0.5)], "dmean")
        return b.op("Reshape", [dout, b.const(np.array([-1, n], np.int64), "sn")], "dflat")

    def classical_fn(k):   # (k, n), (k,) -> (k, n): the k-th classical denoiser (never mirrored)
        return lambda Zs, ss: b.op("Reshape", [inline(classical[k], f"cls{k}/", f"cls{k}", Zs, ss),
                                              b.const(np.array([-1, n], np.int64), "sn")], "cflat")

    def denoise(Z, s, which=None, rows=None):
        """Z (R, n), s (R,) -> (R, n) in [0, 1]: each row through its denoiser (``which``: 0 the network, k > 0 the
        k-th classical one), the denoisers' nodes inline; ``rows`` (bool (R,), or None: all): the rows whose
        result is used (the others hold Z)."""
        if rows is None and not classical:
            return b.op("Clip", [network(Z, s), f32(0.0), f32(1.0)], "dclip")
        if rows is None:
            rows = b.op("Equal", [which, which], "every")   # true on every row
        net_rows = rows if not classical else b.op("And", [rows, b.op("Equal", [which, i64(0)], "isnet")], "netr")
        out = only(net_rows, network, [Z, s], Z)
        for k in range(len(classical)):   # its rows scattered into the network's result (the rows are disjoint)
            krows = b.op("And", [rows, b.op("Equal", [which, i64(k + 1)], "isk")], "kr")
            out = only(krows, classical_fn(k), [Z, s], out)
        return b.op("Clip", [out, f32(0.0), f32(1.0)], "dclip")

    def momentum(V, Xn, X, T):
        """(v, t, beta) after a step to Xn from X, v the point the step was taken at (restarted where it misleads)."""
        prod = b.op("ReduceSum", [b.op("Mul", [b.op("Sub", [V, Xn], "vx"), b.op("Sub", [Xn, X], "xx")], "pp"), ax1],
                    "prod", keepdims=0)
        restart = b.op("Greater", [b.op("Cast", [prod], "prod64", to=DOUBLE), f64(0.0)], "restart")
        tn = b.op("Div", [b.op("Add", [f64(1.0), b.op("Sqrt", [b.op("Add", [f64(1.0), b.op(
            "Mul", [f64(4.0), b.op("Mul", [T, T], "tt")], "t4")], "t41")], "sq")], "t1s"), f64(2.0)], "tnew")
        Tn = where(restart, b.op("Add", [b.op("Mul", [T, f64(0.0)], "t0"), f64(1.0)], "t1"), tn)
        beta = b.op("Cast", [where(restart, b.op("Mul", [T, f64(0.0)], "z"), b.op("Div", [
            b.op("Sub", [T, f64(1.0)], "tm1"), Tn], "bq"))], "beta", to=FLOAT)
        Vn = b.op("Add", [Xn, b.op("Mul", [col(beta), b.op("Sub", [Xn, X], "dx")], "mom")], "vn")
        return Vn, Tn, beta

    def smooth(g, k):  # (rows, n): each channel convolved with the 1-D kernel k along H, then W, mirrored borders
        r = len(k) // 2
        kk = np.asarray(k, np.float32)
        a = b.op("Reshape", [g, b.const(np.array([-1, C, H, Wd], np.int64), "sm4")], "sm")
        a = b.op("Pad", [a, i64([0, 0, r, 0, 0, 0, r, 0])], "smph", mode="reflect")
        a = b.op("Conv", [a, b.const(np.tile(kk.reshape(1, 1, -1, 1), (C, 1, 1, 1)), "smkh")], "smh", group=C,
                 kernel_shape=[len(kk), 1])
        a = b.op("Pad", [a, i64([0, 0, 0, r, 0, 0, 0, r])], "smpw", mode="reflect")
        a = b.op("Conv", [a, b.const(np.tile(kk.reshape(1, 1, 1, -1), (C, 1, 1, 1)), "smkw")], "smw", group=C,
                 kernel_shape=[1, len(kk)])
        return b.op("Reshape", [a, b.const(np.array([-1, n], np.int64), "smn")], "smflat")

    def measure(V, BETA, AXP, rows=None):
        """(A v, A x) at V: A x of the current X without applying A to it (pnp_batch's identity); ``rows`` (bool
        (R,), or None: all): the rows measured (the others hold AXP)."""
        Av = form.forward(b, V) if rows is None else only(rows, lambda v: form.forward(b, v), [V], AXP)
        Ax = b.op("Div", [b.op("Add", [Av, b.op("Mul", [col(BETA), AXP], "bax")], "axs"),
                          b.op("Add", [col(BETA), f32(1.0)], "b1")], "Ax")
        return Av, Ax

    def update(V, X, T, Av, G_rows, gam, tau, s, w_rows, kernel=None, which=None, rows=None):
        """One PnP iteration from V (A v given): (the new X, V, T, beta); ``rows``: the rows that step (None: all)."""
        r = b.op("Mul", [b.op("Sub", [Av, "y"], "rv"), w_rows], "rw")
        data = form.adjoint(b, r) if rows is None else only(rows, lambda r_: form.adjoint(b, r_), [r], V)
        if kernel is not None:
            data = smooth(data, kernel)
        grad = b.op("Add", [data, b.op("Mul", [col(gam), b.op("Sub", [V, G_rows], "vg")], "ga")], "grad")
        Z = b.op("Sub", [V, b.op("Mul", [col(tau), grad], "tg")], "Z")
        Xn = denoise(Z, s, which, rows)
        Vn, Tn, beta = momentum(V, Xn, X, T)
        return Xn, Vn, Tn, beta

    # ---- before the candidates' loop: the rows, their starts
    R = b.op("Shape", ["pnp_gamma"], "R")
    Gflat = b.op("Reshape", ["gs_image", b.const(np.array([1, n], np.int64), "s1n")], "gflat")
    G_rows = b.op("Expand", [Gflat, b.op("Concat", [R, i64([n])], "rn", axis=0)], "grows")
    grey = b.op("Expand", [f32(0.5), b.op("Concat", [R, i64([n])], "rn2", axis=0)], "grey")
    r0 = b.op("Mul", [b.op("Sub", [form.forward(b, grey), "y"], "r0"), "w"], "r0w")
    greystep = b.op("Clip", [b.op("Sub", [grey, b.op("Mul", [col("pnp_tau"), form.adjoint(b, r0)], "gs0")], "g0"),
                             f32(0.0), f32(1.0)], "greystep")
    X0 = where(col("pnp_from_grey"), greystep, G_rows)
    zeros_r = b.op("ConstantOfShape", [R], "zr", value=helper.make_tensor("v", DOUBLE, [1], [0.0]))
    zeros_ri = b.op("ConstantOfShape", [R], "zri", value=helper.make_tensor("v", INT64, [1], [0]))
    zeros_rf = b.op("ConstantOfShape", [R], "zrf", value=helper.make_tensor("v", FLOAT, [1], [0.0]))
    ones_r = b.op("Add", [zeros_r, f64(1.0)], "ones")
    inf_r = b.op("Add", [zeros_r, f64(np.inf)], "inf")
    AXP0 = b.op("ConstantOfShape", [b.op("Concat", [R, i64([m])], "rm", axis=0)], "axp0",
                value=helper.make_tensor("v", FLOAT, [1], [0.0]))
    done0 = b.op("Equal", [zeros_ri, i64(1)], "done0")
    total = b.op("Add", ["pnp_iterations", "pnp_patience"], "total")
    trip = b.op("Add", [b.op("ReduceMax", [total, i64([0])], "tmax", keepdims=0), i64(1)], "trip")
    state = [("X", FLOAT, X0), ("V", FLOAT, X0), ("T", DOUBLE, ones_r), ("BETA", FLOAT, zeros_rf),
             ("AXP", FLOAT, AXP0), ("BEST", FLOAT, X0), ("BERR", DOUBLE, inf_r), ("BIT", INT64, zeros_ri),
             ("STALL", INT64, zeros_ri), ("DONE", BOOL, done0), ("ITERS", INT64, zeros_ri)]
    outer = b.nodes
    b.nodes = []

    # ---- the candidates' loop body: pnp_batch's pass (measure x, keep the best, stop, step the rows still going)
    s_in = {k: f"pnpb/{k}" for k, _, _ in state}
    X, V, T, BETA, AXP, BEST, BERR, BIT, STALL, DONE, ITERS = (s_in[k] for k, _, _ in state)
    act = b.op("Not", [DONE], "act")
    Tmax = b.op("Shape", ["pnp_sigma"], "tshape", start=1, end=2)
    k_idx = b.op("Min", [ITERS, b.op("Sub", [b.op("Squeeze", [Tmax], "tm"), i64(1)], "tm1")], "kidx")
    s = b.op("Squeeze", [b.op("GatherElements", ["pnp_sigma", col(k_idx)], "sg", axis=1), ax1], "sig")
    Av, Ax = measure(V, BETA, AXP, act)
    err = held_error(Ax)
    better = b.op("And", [act, b.op("Less", [err, BERR], "lt")], "better")
    BEST2 = where(col(better), X, BEST)
    BERR2 = where(better, err, BERR)
    BIT2 = where(better, ITERS, BIT)
    STALL2 = where(act, where(better, zeros_ri, b.op("Add", [STALL, i64(1)], "st1")), STALL)
    past = b.op("Not", [b.op("Less", [ITERS, "pnp_iterations"], "within")], "past")
    stop = b.op("And", [b.op("And", [act, past], "ap"), b.op("Or", [
        b.op("Not", [b.op("Less", [STALL2, "pnp_patience"], "lp")], "waited"),
        b.op("Not", [b.op("Less", [ITERS, total], "lt2")], "spent")], "or")], "stop")
    DONE2 = b.op("Or", [DONE, stop], "done")
    go = b.op("And", [act, b.op("Not", [stop], "ns")], "go")
    Xn, Vn, Tn, beta = update(V, X, T, Av, G_rows, "pnp_gamma", "pnp_tau", s, "w",
                              which="pnp_denoiser" if classical else None, rows=go)
    gcol = col(go)
    outs = [where(gcol, Xn, X), where(gcol, Vn, V), where(go, Tn, T), where(go, beta, BETA), where(gcol, Ax, AXP),
            BEST2, BERR2, BIT2, STALL2, DONE2, b.op("Add", [ITERS, b.op("Cast", [go], "goi", to=INT64)], "iters")]
    cond = b.op("Not", [b.op("Cast", [b.op("ReduceMin", [b.op("Cast", [DONE2], "di", to=INT64)], "alld", keepdims=0)],
                              "alldone", to=BOOL)], "cond")
    vi = helper.make_tensor_value_info
    body_nodes = b.nodes
    out_names = [f"pnpb/{k}_out" for k, _, _ in state]
    for o, nm in zip(outs, out_names):
        body_nodes.append(helper.make_node("Identity", [o], [nm], name=f"pnp/out_{nm}"))
    body_nodes.append(helper.make_node("Identity", [cond], ["pnpb/cond_out"], name="pnp/out_cond"))
    body = helper.make_graph(body_nodes, "pnp_iteration",
                             [vi("pnpb/k", INT64, []), vi("pnpb/cond", BOOL, [])] + [vi(s_in[k], t, None)
                                                                                   for k, t, _ in state],
                             [vi("pnpb/cond_out", BOOL, [])] + [vi(nm, t, None) for nm, (_, t, _) in zip(out_names, state)])
    b.nodes = outer
    fin = [f"pnpf/{k}" for k, _, _ in state]
    b.nodes.append(helper.make_node("Loop", [trip, b.op("Equal", [i64(0), i64(0)], "true")] + [v for _, _, v in state],
                                    fin, name="pnp/loop", body=body))
    F = dict(zip([k for k, _, _ in state], fin))

    # ---- the choice: GS's image or the candidate of lowest held-out error
    err_gs = held_error(form.forward(b, Gflat))
    b.op("Concat", [err_gs, F["BERR"]], outputs=["pnp_held_out"], axis=0)
    scaled = b.op("Concat", [err_gs, b.op("Mul", [F["BERR"], f64(1.0 + TIE)], "tie")], "scaled", axis=0)
    b.op("ArgMin", [scaled], outputs=["pnp_chosen"], axis=0, keepdims=0)
    b.op("Identity", [F["ITERS"]], outputs=["pnp_rows_iterations"])
    row = b.op("Max", [b.op("Sub", ["pnp_chosen", i64(1)], "c1"), i64(0)], "row")
    pick = lambda v: b.op("Gather", [v, b.op("Unsqueeze", [row, i64([0])], "ri")], "pick", axis=0)  # noqa: E731
    start_x = pick(F["BEST"])
    gam1, tau1 = pick("pnp_gamma"), pick("pnp_tau")
    last = b.op("Sub", [pick("pnp_iterations"), i64(1)], "lastk")
    s_last = b.op("GatherElements", [pick("pnp_sigma"), b.op("Unsqueeze", [last, ax1], "lk")], "slast", axis=1)
    s_last = b.op("Reshape", [s_last, i64([1])], "slast1")
    if polish_sigma:
        s_last = b.const(np.array([polish_sigma], np.float32), "spolish")
    ones_m = b.op("Add", [b.op("Mul", ["w", f32(0.0)], "w0"), f32(1.0)], "wall")
    # ---- the polish: pnp_polish iterations on every row, from the chosen iterate (a fresh momentum)
    pstate = [("X", FLOAT, start_x), ("V", FLOAT, start_x), ("T", DOUBLE, b.op("Add", [b.op(
        "Mul", [b.op("Cast", [gam1], "g64", to=DOUBLE), f64(0.0)], "z1"), f64(1.0)], "t1")),
              ("BETA", FLOAT, b.op("Mul", [gam1, f32(0.0)], "b0")),
              ("AXP", FLOAT, b.op("ConstantOfShape", [i64([1, m])], "axp1", value=helper.make_tensor("v", FLOAT, [1], [0.0])))]
    outer = b.nodes
    b.nodes = []
    p_in = {k: f"pnpp/{k}" for k, _, _ in pstate}
    which1 = pick("pnp_denoiser") if classical else None
    Av, Ax = measure(p_in["V"], p_in["BETA"], p_in["AXP"])
    Xn, Vn, Tn, beta = update(p_in["V"], p_in["X"], p_in["T"], Av, Gflat, gam1, tau1, s_last, ones_m, polish_kernel,
                              which1)
    pouts = [Xn, Vn, Tn, beta, Ax]
    pnodes = b.nodes
    pnames = [f"pnpp/{k}_out" for k, _, _ in pstate]
    for o, nm in zip(pouts, pnames):
        pnodes.append(helper.make_node("Identity", [o], [nm], name=f"pnp/pout_{nm}"))
    pnodes.append(helper.make_node("Identity", ["pnpp/cond"], ["pnpp/cond_out"], name="pnp/pout_cond"))
    pbody = helper.make_graph(pnodes, "pnp_polish",
                              [vi("pnpp/k", INT64, []), vi("pnpp/cond", BOOL, [])] + [vi(p_in[k], t, None)
                                                                                    for k, t, _ in pstate],
                              [vi("pnpp/cond_out", BOOL, [])] + [vi(nm, t, None) for nm, (_, t, _) in zip(pnames, pstate)])
    b.nodes = outer
    pfin = [f"pnpq/{k}" for k, _, _ in pstate]
    polish_trip = where(b.op("Equal", ["pnp_chosen", i64(0)], "keptgs"), i64(0), "pnp_polish")
    b.nodes.append(helper.make_node("Loop", [polish_trip, b.op("Equal", [i64(0), i64(0)], "true2")] +
                                    [v for _, _, v in pstate], pfin, name="pnp/polish", body=pbody))
    final = where(b.op("Equal", ["pnp_chosen", i64(0)], "isgs"), Gflat, pfin[0])
    final = b.op("Clip", [final, f32(0.0), f32(1.0)], "fc")
    b.op("Reshape", [final, b.const(np.array([C, H, Wd], np.int64), "chw")], outputs=["pnp/image"])
    rf = b.op("Cast", [b.op("Sub", [form.forward(b, final), "y"], "rf")], "rf64", to=DOUBLE)
    b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [rf, rf], "rf2"), i64([0, 1])], "rfs", keepdims=0)],
         outputs=["pnp/residual"])
    stage_nodes = b.nodes

    # ---- an If on `running`: the stage once GS is done, GS's image while it still runs
    stage_outs = ["pnp/image", "pnp_held_out", "pnp_chosen", "pnp_rows_iterations", "pnp/residual"]
    branch_outs = ["pnp/o_image", "pnp/o_held", "pnp/o_chosen", "pnp/o_rows", "pnp/o_residual"]
    types = [FLOAT, DOUBLE, INT64, INT64, DOUBLE]
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["gs_image"], ["pnp/t_image"], name="pnp/t0"),
         helper.make_node("Constant", [], ["pnp/t_held"], name="pnp/t1",
                          value=helper.make_tensor("v", DOUBLE, [0], [])),
         helper.make_node("Constant", [], ["pnp/t_chosen"], name="pnp/t2", value=helper.make_tensor("v", INT64, [], [0])),
         helper.make_node("Constant", [], ["pnp/t_rows"], name="pnp/t3", value=helper.make_tensor("v", INT64, [0], [])),
         helper.make_node("Identity", ["gs_residual"], ["pnp/t_residual"], name="pnp/t4")],
        "gs_running", [], [vi(o, t, None) for o, t in zip(["pnp/t_image", "pnp/t_held", "pnp/t_chosen", "pnp/t_rows",
                                                            "pnp/t_residual"], types)])
    else_g = helper.make_graph(stage_nodes + [helper.make_node("Identity", [s_], [o], name=f"pnp/e_{o}")
                                              for s_, o in zip(stage_outs, branch_outs)],
                               "pnp_stage", [], [vi(o, t, None) for o, t in zip(branch_outs, types)])
    g.node.append(helper.make_node("If", ["running"], ["image", "pnp_held_out", "pnp_chosen", "pnp_rows_iterations",
                                                       "residual"],
                                   name="pnp/after_gs", then_branch=then_g, else_branch=else_g))
    have = {i.name for i in g.input}
    missing = sorted(set(b.lifted) - have)
    if missing:
        raise GSError(f"the PnP stage reads operator data {missing[0]!r} that the recovery graph does not take")
    g.initializer.extend(den_inits + b.inits)
    elem = {"float32": FLOAT, "float64": DOUBLE, "int64": INT64, "bool": BOOL}
    g.input.extend([vi(k, elem[d], list(shp)) for k, (d, shp) in {**INPUTS, **(DENOISER_INPUT if classical else {})}.items()])
    g.output.extend([vi("gs_image", FLOAT, [C, H, Wd]), vi("gs_residual", DOUBLE, []), vi("pnp_held_out", DOUBLE, [None]),
                     vi("pnp_chosen", INT64, []), vi("pnp_rows_iterations", INT64, [None])])
    return model


def _copy(node):
    onnx, _, _ = onnx_modules()
    c = onnx.NodeProto()
    c.CopyFrom(node)
    return c


def graph_stage(model, man, op, denoiser: str | None, models_dir=None, noise: float | None = None):
    """gs-pnp's PnP stage added to a recovery graph (:func:`gs_onnx.solve.pnp_graph.with_pnp_stage`) with the plans
    this method runs on the host: (model, the stage's input values, the plan described, the meaning and the
    declared outputs of its names). ``noise``: the measured image's noise level, for plans that polish at it
    (:func:`gs_onnx.solve.pnp.noise_level`; a constant of the graph, as the polish's level)."""
    from ..generator.denoiser import INPUTS as DEN_IN, OUTPUTS as DEN_OUT, find_denoiser
    from ..generator.manifest import load_graph
    from .lasso import lipschitz

    from .priors import classical_candidates

    dman = find_denoiser(denoiser, models_dir)
    kind = (op.describe() or {}).get("type")
    pnp_plan, anch = plan_for("onnx", kind), anchored_plan(kind)
    L = lipschitz(op)
    polish, polish_sigma, kernel = polish_for(kind), polish_sigma_for(kind, noise), polish_kernel(op)
    classical = classical_candidates(kind, "cpu", 1)   # the host's own candidates: their graphs, plans, words
    model = with_pnp_stage(model, op.onnx_form(), load_graph(dman, dman.graph, DEN_IN, DEN_OUT), tuple(man.image_shape),
                           op.m, flip=FLIP, polish_sigma=polish_sigma, polish_kernel=kernel,
                           classical=[d.model for _, d, _ in classical])
    extra = [(name, p) for name, _, p in classical]
    values = stage_values(pnp_plan, anch, L, PATIENCE, polish, extra)
    plan = {"denoiser": {"name": dman.name, "manifest_sha256": _sha(dman.root / "manifest.json")},
            "candidates": [name for name, _ in candidates(anch)] + [name for name, _ in extra],
            **({"classical": {name: {"denoiser": {k: v for k, v in d.describe().items() if k != "provider"},
                                     "plan": p} for name, d, p in classical}} if classical else {}),
            "plain": pnp_plan, "anchored": anch, "flip": FLIP,
            "lipschitz": L, "patience": PATIENCE, "polish": polish,
            **({"polish_sigma": polish_sigma} if polish_sigma else {}),
            **({"polish_kernel": kernel.tolist()} if kernel is not None else {})}
    return model, values, plan, dict(MEANING), dict(OUTPUTS)


def stage_values(pnp_plan: dict, anchor_plan: dict, L: float, patience: int, polish: int,
                 extra: list[tuple[str, dict]] = ()) -> dict[str, np.ndarray]:
    """The stage's input values for gs-pnp's plans (the candidates of :func:`gs_onnx.solve.pnp.candidates`, then
    the classical ones, ``extra`` (name, plan), in that order), as :func:`gs_onnx.solve.methods.gs_pnp.refine`
    builds its rows."""
    rows = [(g, anchor_plan if g is not None else pnp_plan, 0) for _, g in candidates(anchor_plan)]
    rows += [(None, p, k + 1) for k, (_, p) in enumerate(extra)]
    scheds = [Schedule(int(p["iterations"]), float(p["sigma_max"]), float(p["sigma_min"])) for _, p, _ in rows]
    T = max(s.iterations for s in scheds)
    gam = np.array([g or 0.0 for g, _, _ in rows], np.float64)
    step = np.array([float(p.get("step", 1.0)) for _, p, _ in rows])
    return {"pnp_sigma": np.stack([np.pad(s.sigmas(), (0, T - s.iterations), mode="edge") for s in scheds]
                                  ).astype(np.float32),
            "pnp_iterations": np.array([s.iterations for s in scheds], np.int64),
            "pnp_gamma": gam.astype(np.float32),
            "pnp_tau": (step / (float(L) + gam)).astype(np.float32),
            "pnp_from_grey": np.array([g is None for g, _, _ in rows]),
            **({"pnp_denoiser": np.array([k for _, _, k in rows], np.int64)} if extra else {}),
            "pnp_patience": np.asarray(int(patience), np.int64), "pnp_polish": np.asarray(int(polish), np.int64)}


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
