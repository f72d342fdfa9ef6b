"""gs-tv's second stage in the recovery graph: total variation anchored to GS's image as ONNX nodes after the GS
loop, so that a recovery folder of gs-tv (the default beyond compressed sensing where gs-pnp is not) runs in any
ONNX Runtime and gives what ``gs-recover meas.npy`` gives.

:func:`with_tv_stage` takes a recovery graph (:func:`gs_onnx.solve.recovery_graph.recovery_model`) and returns it
extended: GS's image becomes ``gs_image``; once GS has finished (``running`` false), an ``If`` runs what
:func:`gs_onnx.solve.tv.tv_batch` runs on the host with ``anchor`` = GS's image, on the same numbers: a ``Loop`` of
FISTA with adaptive restart on ``||A x - y||^2 + gamma ||x - G||^2`` from grey, each step's proximal operator (TV
plus the box [0, 1]) by :data:`gs_onnx.solve.tv.PROX_ITERS` unrolled iterations of the fast gradient projection
on the dual (warm-started across steps), and the host's stopping rule: every
:data:`gs_onnx.solve.tv.CHECK_EVERY` iterations the objective ``||A x - y||^2 + lam TV(x) + gamma ||x - G||^2``
(float64) is checked, and the run stops once it went down by at most ``tv_tol`` (relative) over the last
:data:`gs_onnx.solve.tv.PLATEAU_CHECKS` checks, or after ``tv_max_iter`` iterations. The objective is evaluated
every iteration (one more application of A; the operators gs-tv is the default for are cheap) and used at the
checks only, so that the loop body has no control flow inside (the WebGPU EP's placement).

While GS is still running (a chunked run), ``image`` is ``gs_image`` and the TV outputs are empty placeholders.
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError
from ..physics.onnxform import DOUBLE, FLOAT, INT64, Builder, onnx_modules
from .tv import CHECK_EVERY, MAX_ITER, PLATEAU_CHECKS, PROX_ITERS, TOL

BOOL = 9

#: The stage's inputs (name: (dtype, shape)).
INPUTS = {"tv_lam": ("float64", ()), "tv_gamma": ("float64", ()), "tv_lipschitz": ("float64", ()),
          "tv_max_iter": ("int64", ()), "tv_tol": ("float64", ())}
OUTPUTS = {"gs_image": ("float32", ("C", "H", "W")), "gs_residual": ("float64", ()), "tv_iterations": ("int64", ()),
           "tv_objective": ("float64", ()), "tv_converged": ("bool", ())}
MEANING = {
    "tv_lam": "TV's weight lam in ||A x - y||^2 + lam TV(x) + gamma ||x - G||^2",
    "tv_gamma": "the weight gamma of the pull towards GS's image G",
    "tv_lipschitz": "||A||^2 (FISTA's step is 1 / (2 (||A||^2 + gamma)))",
    "tv_max_iter": "FISTA iterations at most",
    "tv_tol": "the stopping rule's relative decrease of the objective over the last checks",
    "gs_image": "GS's image (the first stage's winner) in [0, 1]",
    "gs_residual": "||A gs_image - y||",
    "tv_iterations": "FISTA iterations run",
    "tv_objective": "the objective of the returned image",
    "tv_converged": "true where the stopping rule (not tv_max_iter) ended the run",
}


def prox_coefficients(iters: int = PROX_ITERS) -> np.ndarray:
    """The momentum coefficients ``(t_k - 1) / t_{k+1}`` of the prox's fast gradient projection (t_0 = 1 at every
    call, as :func:`gs_onnx.solve.tv.prox_tv`), float32 as the host applies them."""
    out, t = [], 1.0
    for _ in range(iters):
        t_new = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        out.append((t - 1.0) / t_new)
        t = t_new
    return np.asarray(out, np.float32)


def with_tv_stage(model, form, image_shape: tuple[int, int, int]):
    """``model`` (a recovery graph) extended by gs-tv's TV stage (see the module's docstring); ``form``: the
    operator's ONNX form (the same nodes the GS stage uses: its inputs are already the graph's)."""
    onnx, helper, _ = onnx_modules()
    C, H, Wd = image_shape
    n = C * H * Wd
    graph = model.graph
    if not any(o.name == "image" for o in graph.output):
        raise GSError("not a recovery graph: it has no output 'image'")
    for node in graph.node:   # GS's image and residual become gs_image and gs_residual
        node.output[:] = [{"image": "gs_image", "residual": "gs_residual"}.get(o, o) for o in node.output]

    b = Builder(lift=True, prefix="tv/")
    i64 = lambda v: b.const(np.asarray(v, np.int64), "i")   # noqa: E731
    f32 = lambda v: b.const(np.float32(v), "f")             # noqa: E731
    f64 = lambda v: b.const(np.float64(v), "d")             # noqa: E731
    shape4 = b.const(np.array([1, C, H, Wd], np.int64), "s4")
    flat_n = b.const(np.array([1, n], np.int64), "sn")

    def flat(x4):
        return b.op("Reshape", [x4, flat_n], "flat")

    def img(xf):
        return b.op("Reshape", [xf, shape4], "img")

    def sl(x, axis, start, end):
        return b.op("Slice", [x, i64([start]), i64([end]), i64([axis])], "sl")

    def grad(x):  # (1, C, H, W) -> (h, v): forward differences, zero across the last column / row
        h = b.op("Sub", [sl(x, 3, 1, Wd), sl(x, 3, 0, Wd - 1)], "dh")
        h = b.op("Pad", [h, i64([0, 0, 0, 0, 0, 0, 0, 1])], "dhp", mode="constant")
        v = b.op("Sub", [sl(x, 2, 1, H), sl(x, 2, 0, H - 1)], "dv")
        v = b.op("Pad", [v, i64([0, 0, 0, 0, 0, 0, 1, 0])], "dvp", mode="constant")
        return h, v

    def grad_t(h, v):  # the adjoint of grad (minus the divergence), as gs_onnx.solve.tv.grad_adjoint
        hh, vv = sl(h, 3, 0, Wd - 1), sl(v, 2, 0, H - 1)
        out = b.op("Sub", [b.op("Pad", [hh, i64([0, 0, 0, 1, 0, 0, 0, 0])], "hr", mode="constant"),
                           b.op("Pad", [hh, i64([0, 0, 0, 0, 0, 0, 0, 1])], "hl", mode="constant")], "gth")
        return b.op("Add", [out, b.op("Sub", [b.op("Pad", [vv, i64([0, 0, 1, 0, 0, 0, 0, 0])], "vd", mode="constant"),
                                              b.op("Pad", [vv, i64([0, 0, 0, 0, 0, 0, 1, 0])], "vu", mode="constant")],
                                       "gtv")], "gt")

    def prox(bimg, mu, step, rh, rv):
        """prox_tv: argmin over x in [0, 1] of ||x - b||^2 / 2 + mu TV(x), PROX_ITERS unrolled iterations from the
        dual (rh, rv); returns x and the dual reached."""
        sh, sv = rh, rv
        for c in prox_coefficients():
            x = b.op("Clip", [b.op("Sub", [bimg, b.op("Mul", [mu, grad_t(sh, sv)], "mg")], "bx"), f32(0.0), f32(1.0)],
                     "px")
            gh, gv = grad(x)
            nh = b.op("Add", [sh, b.op("Mul", [step, gh], "sgh")], "nh")
            nv = b.op("Add", [sv, b.op("Mul", [step, gv], "sgv")], "nv")
            norm = b.op("Max", [f32(1.0), b.op("Sqrt", [b.op("Add", [b.op("Mul", [nh, nh], "hh2"),
                                                                      b.op("Mul", [nv, nv], "vv2")], "n2")], "nr")],
                        "nrm")
            nh, nv = b.op("Div", [nh, norm], "nhn"), b.op("Div", [nv, norm], "nvn")
            cc = f32(c)
            sh = b.op("Add", [nh, b.op("Mul", [cc, b.op("Sub", [nh, rh], "dh")], "mh")], "sh")
            sv = b.op("Add", [nv, b.op("Mul", [cc, b.op("Sub", [nv, rv], "dv")], "mv")], "sv")
            rh, rv = nh, nv
        x = b.op("Clip", [b.op("Sub", [bimg, b.op("Mul", [mu, grad_t(rh, rv)], "mg")], "bx"), f32(0.0), f32(1.0)], "px")
        return x, rh, rv

    def objective(x4, G4, lam, gam):  # float64, as gs_onnx.solve.tv._objective
        r = b.op("Sub", [b.op("Cast", [form.forward(b, flat(x4))], "ax64", to=DOUBLE),
                         b.op("Cast", ["y"], "y64", to=DOUBLE)], "r")
        data = b.op("ReduceSum", [b.op("Mul", [r, r], "r2")], "data", keepdims=0)
        gh, gv = grad(b.op("Cast", [x4], "x64", to=DOUBLE))
        tv = b.op("ReduceSum", [b.op("Sqrt", [b.op("Add", [b.op("Mul", [gh, gh], "h2"), b.op("Mul", [gv, gv], "v2")],
                                                    "g2")], "gn")], "tv", keepdims=0)
        d = b.op("Cast", [b.op("Sub", [x4, G4], "xg")], "xg64", to=DOUBLE)
        anch = b.op("ReduceSum", [b.op("Mul", [d, d], "d2")], "anch", keepdims=0)
        return b.op("Add", [b.op("Add", [data, b.op("Mul", [lam, tv], "ltv")], "dt"), b.op("Mul", [gam, anch], "ga")],
                    "obj")

    # ---- constants of the run, from the inputs (float64, cast to float32 where the host's Python floats are)
    Lf64 = b.op("Mul", [f64(2.0), b.op("Add", ["tv_lipschitz", "tv_gamma"], "lg")], "lf")
    mu64 = b.op("Div", ["tv_lam", Lf64], "mu")
    Lf = b.op("Cast", [Lf64], "lf32", to=FLOAT)
    mu = b.op("Cast", [mu64], "mu32", to=FLOAT)
    pstep = b.op("Cast", [b.op("Div", [f64(1.0), b.op("Mul", [f64(8.0), mu64], "m8")], "st")], "st32", to=FLOAT)
    gam2 = b.op("Cast", [b.op("Mul", [f64(2.0), "tv_gamma"], "g2")], "g232", to=FLOAT)
    G4 = b.op("Reshape", ["gs_image", shape4], "g4")
    x0 = b.op("Expand", [f32(0.5), shape4], "grey")
    zeros4 = b.op("Expand", [f32(0.0), shape4], "z4")
    hist0 = b.op("Expand", [f64(np.inf), i64([PLATEAU_CHECKS + 1])], "hist0")
    false = b.op("Equal", [i64(0), i64(1)], "false")
    state = [("X", FLOAT, x0), ("V", FLOAT, x0), ("T", DOUBLE, f64(1.0)), ("RH", FLOAT, zeros4), ("RV", FLOAT, zeros4),
             ("HIST", DOUBLE, hist0), ("NCHK", INT64, i64(0)), ("ITERS", INT64, i64(0)), ("DONE", BOOL, false)]
    outer = b.nodes
    b.nodes = []

    # ---- one FISTA iteration (tv_batch's pass for one image)
    s_in = {k: f"tvb/{k}" for k, _, _ in state}
    X, V, T, RH, RV, HIST, NCHK, ITERS, DONE = (s_in[k] for k, _, _ in state)
    r = b.op("Sub", [form.forward(b, flat(V)), "y"], "res")
    g = b.op("Mul", [img(form.adjoint(b, r)), f32(2.0)], "g")
    g = b.op("Add", [g, b.op("Mul", [gam2, b.op("Sub", [V, G4], "vg")], "ga")], "gg")
    Xn, RHn, RVn = prox(b.op("Sub", [V, b.op("Div", [g, Lf], "glf")], "bv"), mu, pstep, RH, RV)
    prod = b.op("ReduceSum", [b.op("Mul", [b.op("Sub", [V, Xn], "vx"), b.op("Sub", [Xn, X], "xx")], "pp")], "prod",
                keepdims=0)
    restart = b.op("Greater", [b.op("Cast", [prod], "prod64", to=DOUBLE), f64(0.0)], "restart")
    tn = b.op("Div", [b.op("Add", [f64(1.0), b.op("Sqrt", [b.op("Add", [f64(1.0), b.op(
        "Mul", [f64(4.0), b.op("Mul", [T, T], "tt")], "t4")], "t41")], "sq")], "t1s"), f64(2.0)], "tnew")
    Tn = b.op("Where", [restart, f64(1.0), tn], "tn")
    beta = b.op("Where", [restart, f64(0.0), b.op("Div", [b.op("Sub", [T, f64(1.0)], "tm1"), Tn], "bq")], "beta")
    Vn = b.op("Cast", [b.op("Add", [b.op("Cast", [Xn], "xn64", to=DOUBLE), b.op("Mul", [beta, b.op(
        "Cast", [b.op("Sub", [Xn, X], "dx")], "dx64", to=DOUBLE)], "bdx")], "v64")], "vn", to=FLOAT)
    it = b.op("Add", [ITERS, i64(1)], "it")
    check = b.op("Equal", [b.op("Mod", [it, i64(CHECK_EVERY)], "mod"), i64(0)], "check")
    obj = objective(Xn, G4, "tv_lam", "tv_gamma")
    pushed = b.op("Concat", [sl(HIST, 0, 1, PLATEAU_CHECKS + 1), b.op("Reshape", [obj, i64([1])], "o1")], "push", axis=0)
    HISTn = b.op("Where", [check, pushed, HIST], "hist")
    NCHKn = b.op("Add", [NCHK, b.op("Cast", [check], "chk", to=INT64)], "nchk")
    old = b.op("Squeeze", [sl(HISTn, 0, 0, 1), i64([0])], "old")
    recent = b.op("ReduceMin", [sl(HISTn, 0, 1, PLATEAU_CHECKS + 1)], "recent", keepdims=0)
    flat_run = b.op("LessOrEqual", [b.op("Sub", [old, recent], "drop"),
                                    b.op("Mul", ["tv_tol", b.op("Abs", [old], "aold")], "tolx")], "plateau")
    DONEn = b.op("And", [b.op("And", [check, b.op("Greater", [NCHKn, i64(PLATEAU_CHECKS)], "enough")], "ce"), flat_run],
                 "done")
    outs = [Xn, Vn, Tn, RHn, RVn, HISTn, NCHKn, it, DONEn]
    cond = b.op("Not", [DONEn], "cond")
    vi = helper.make_tensor_value_info
    body_nodes = b.nodes
    out_names = [f"tvb/{k}_out" for k, _, _ in state]
    for o, nm in zip(outs, out_names):
        body_nodes.append(helper.make_node("Identity", [o], [nm], name=f"tv/out_{nm}"))
    body_nodes.append(helper.make_node("Identity", [cond], ["tvb/cond_out"], name="tv/out_cond"))
    body = helper.make_graph(body_nodes, "tv_iteration",
                             [vi("tvb/k", INT64, []), vi("tvb/cond", BOOL, [])] + [vi(s_in[k], t, None)
                                                                                 for k, t, _ in state],
                             [vi("tvb/cond_out", BOOL, [])] + [vi(nm, t, None) for nm, (_, t, _) in zip(out_names, state)])
    b.nodes = outer
    fin = [f"tvf/{k}" for k, _, _ in state]
    b.nodes.append(helper.make_node("Loop", ["tv_max_iter", b.op("Equal", [i64(0), i64(0)], "true")] +
                                    [v for _, _, v in state], fin, name="tv/loop", body=body))
    F = dict(zip([k for k, _, _ in state], fin))
    b.op("Identity", [F["ITERS"]], outputs=["tv/iterations"])
    b.op("Identity", [F["DONE"]], outputs=["tv/converged"])
    b.op("Identity", [objective(F["X"], G4, "tv_lam", "tv_gamma")], outputs=["tv/objective"])
    b.op("Reshape", [F["X"], b.const(np.array([C, H, Wd], np.int64), "chw")], outputs=["tv/image"])
    rf = b.op("Cast", [b.op("Sub", [form.forward(b, flat(F["X"])), "y"], "rf")], "rf64", to=DOUBLE)
    b.op("Sqrt", [b.op("ReduceSum", [b.op("Mul", [rf, rf], "rf2"), i64([0, 1])], "rfs", keepdims=0)],
         outputs=["tv/residual"])
    stage_nodes = b.nodes

    # ---- an If on `running`: the stage once GS is done, GS's image while it still runs
    stage_outs = ["tv/image", "tv/iterations", "tv/objective", "tv/converged", "tv/residual"]
    branch_outs = ["tv/o_image", "tv/o_iterations", "tv/o_objective", "tv/o_converged", "tv/o_residual"]
    types = [FLOAT, INT64, DOUBLE, BOOL, DOUBLE]
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["gs_image"], ["tv/t_image"], name="tv/t0"),
         helper.make_node("Constant", [], ["tv/t_iterations"], name="tv/t1", value=helper.make_tensor("v", INT64, [], [0])),
         helper.make_node("Constant", [], ["tv/t_objective"], name="tv/t2",
                          value=helper.make_tensor("v", DOUBLE, [], [float("nan")])),
         helper.make_node("Constant", [], ["tv/t_converged"], name="tv/t3", value=helper.make_tensor("v", BOOL, [], [0])),
         helper.make_node("Identity", ["gs_residual"], ["tv/t_residual"], name="tv/t4")],
        "gs_running", [], [vi(o, t, None) for o, t in zip(["tv/t_image", "tv/t_iterations", "tv/t_objective",
                                                            "tv/t_converged", "tv/t_residual"], types)])
    else_g = helper.make_graph(stage_nodes + [helper.make_node("Identity", [s_], [o], name=f"tv/e_{o}")
                                              for s_, o in zip(stage_outs, branch_outs)],
                               "tv_stage", [], [vi(o, t, None) for o, t in zip(branch_outs, types)])
    graph.node.append(helper.make_node("If", ["running"], ["image", "tv_iterations", "tv_objective", "tv_converged",
                                                       "residual"],
                                   name="tv/after_gs", then_branch=then_g, else_branch=else_g))
    have = {i.name for i in graph.input}
    missing = sorted(set(b.lifted) - have)
    if missing:
        raise GSError(f"the TV stage reads operator data {missing[0]!r} that the recovery graph does not take")
    graph.initializer.extend(b.inits)
    elem = {"float32": FLOAT, "float64": DOUBLE, "int64": INT64, "bool": BOOL}
    graph.input.extend([vi(k, elem[d], list(shp)) for k, (d, shp) in INPUTS.items()])
    graph.output.extend([vi("gs_image", FLOAT, [C, H, Wd]), vi("gs_residual", DOUBLE, []), vi("tv_iterations", INT64, []),
                     vi("tv_objective", DOUBLE, []), vi("tv_converged", BOOL, [])])
    return model


def stage_values(lam: float, gamma: float, L: float, max_iter: int = MAX_ITER, tol: float = TOL) -> dict:
    """The stage's input values (as :class:`gs_onnx.solve.methods.gs_tv.GSTVSolver` runs ``tv_batch``)."""
    return {"tv_lam": np.asarray(float(lam), np.float64), "tv_gamma": np.asarray(float(gamma), np.float64),
            "tv_lipschitz": np.asarray(float(L), np.float64), "tv_max_iter": np.asarray(int(max_iter), np.int64),
            "tv_tol": np.asarray(float(tol), np.float64)}


def graph_stage(model, man, op, lam: float | None = None, gamma: float | None = None):
    """gs-tv's TV stage added to a recovery graph with the weights this method runs on the host (the model's
    ``recommended.gs_tv``, else the operator type's defaults; ``lam``/``gamma`` override them): (model, the stage's
    input values, the plan described, the meaning and the declared outputs of its names)."""
    from .lasso import lipschitz
    from .tv import tv_weights

    kind = (op.describe() or {}).get("type")
    lam, gamma = tv_weights(man, kind, lam, gamma)
    L = lipschitz(op)
    model = with_tv_stage(model, op.onnx_form(), tuple(man.image_shape))
    values = stage_values(lam, gamma, L)
    plan = {"lam": lam, "gamma": gamma, "lipschitz": L, "max_iter": MAX_ITER, "tol": TOL, "check_every": CHECK_EVERY,
            "plateau_checks": PLATEAU_CHECKS, "prox_iterations": PROX_ITERS}
    return model, values, plan, dict(MEANING), dict(OUTPUTS)
