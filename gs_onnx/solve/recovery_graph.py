"""The whole recovery in one ONNX graph: any ONNX Runtime, any language, no host loop.

:func:`recovery_model` builds, for a model, a cut and an operator, one ONNX model whose single run does what
``gs-recover --optimizer lbfgs`` does on the host: every restart (a row of ``z0``) runs the paper's L-BFGS
(torch.optim.LBFGS's semantics without line search, as :func:`gs_onnx.solve.lbfgs.minimize_batch`; or Adam, as
:func:`gs_onnx.solve.adam.minimize_adam_batch`) inside an
ONNX ``Loop`` whose body evaluates the composed objective (the tail's forward and VJP graphs, the operator's ONNX
form, the weighted loss, the held-out loss, the skip prior), keeps the best iterate by held-out error and stops
each row by the plan's rule; after the loop the winner among restarts is chosen as ``gs-recover`` chooses it and
its image comes out in [0, 1]. The operator comes in as data (graph inputs), not as a seed.

Interface (docs/recovery-graph.md is the specification; every name is in :data:`INPUTS` and :data:`OUTPUTS`):

inputs
    ``z0`` (K, size) float32: the start latents, one row per restart; ``y`` (1, m) float32 the measurements;
    ``w`` (1, m) float32 the row weights (1 fitted, 0 held out); ``prior_mean``, ``prior_scale`` (size,)
    float64: the skip prior ``sum ((z - mean) * scale)^2`` (scale 0: off); the optimiser's numbers
    ``lr``, ``tolerance_grad``, ``tolerance_change`` (float64 scalars), ``steps`` and ``step_iters`` (int64:
    torch's ``step()`` calls and iterations per call), ``patience`` (int64: 0 = a fixed budget, the winner by
    measurement error; > 0 = held-out stopping, the winner by held-out error); the operator's own inputs (the
    dense Gaussian ``A``; ``op_*`` tables of structured operators).
outputs
    ``image`` (C, H, W) float32 in [0, 1]; ``images`` (K, C, H, W) every restart's; ``latent`` (size,) float32 the
    winner's packed latents; ``winner`` int64; ``score`` (K,) float64 the winner rule's numbers; ``objective``
    (iterations, K) float64 the objective after every iteration; ``iterations`` (K,) int64 the iterations each
    row ran; ``best_iteration`` (K,) int64 the iterate each row returned.
"""
from __future__ import annotations

import numpy as np

from ..errors import GSError
from ..engine import graph as G
from ..engine.runtime import interruptible_run
from ..physics.onnxform import DOUBLE, FLOAT, INT64, Builder, onnx_modules

#: ONNX's bool element type.
BOOL = 9

#: Graph inputs besides the operator's (name: (dtype, shape), shape in terms of K, size, m).
INPUTS = {
    "z0": ("float32", ("K", "size")), "y": ("float32", (1, "m")), "w": ("float32", (1, "m")),
    "prior_mean": ("float64", ("size",)), "prior_scale": ("float64", ("size",)),
    "lr": ("float64", ()), "tolerance_grad": ("float64", ()), "tolerance_change": ("float64", ()),
    "steps": ("int64", ()), "step_iters": ("int64", ()), "patience": ("int64", ()),
}
#: The optimisers the graph runs, and the scalar inputs each reads.
GRAPH_OPTIMIZERS = ("lbfgs", "adam")
SCALARS = {"lbfgs": ("lr", "tolerance_grad", "tolerance_change", "steps", "step_iters", "patience"),
           "adam": ("lr", "beta1", "beta2", "eps", "max_iterations", "patience")}
INPUTS.update({"beta1": ("float64", ()), "beta2": ("float64", ()), "eps": ("float64", ()), "max_iterations": ("int64", ())})
#: Graph outputs.
OUTPUTS = {
    "image": ("float32", ("C", "H", "W")), "images": ("float32", ("K", "C", "H", "W")),
    "latent": ("float32", ("size",)), "winner": ("int64", ()), "score": ("float64", ("K",)),
    "objective": ("float64", ("iterations", "K")), "iterations": ("int64", ("K",)),
    "best_iteration": ("int64", ("K",)), "residual": ("float64", ()),
}
_ELEM = {"float32": FLOAT, "float64": DOUBLE, "int64": INT64, "bool": BOOL}
#: A run can continue where the previous one stopped: its loop state comes out as ``next_NAME`` and goes back in as
#: ``state_NAME`` (with ``start`` = the iterations run so far); at ``start`` = 0 the state inputs are not read.
STATE_IN, STATE_OUT = "state_", "next_"
INPUTS.update({"start": ("int64", ()), "chunk": ("int64", ())})
#: torch.optim.LBFGS's curvature test: a pair (s, y) enters the history only where y.s exceeds it.
CURVATURE_EPS = 1e-10


def state_spec(optimizer: str, size: int, history: int) -> dict[str, tuple[str, tuple]]:
    """The loop state of the recovery graph, in the Loop's order: name -> (dtype, shape), shapes with ``"K"`` the
    restarts. Fed back as ``state_NAME`` and read as ``next_NAME``; clients treat it as opaque."""
    kn, k = ("K", size), ("K",)
    if optimizer == "lbfgs":
        h = int(history)
        return {"X": ("float64", kn), "G": ("float64", kn), "F": ("float64", k), "FH": ("float64", k),
                "GP": ("float64", kn), "D": ("float64", kn), "T": ("float64", k), "W": ("float32", ("K", 2 * h, size)),
                "SY": ("float64", ("K", h, h)), "YY": ("float64", ("K", h, h)), "HD": ("float64", k),
                "ACT": ("bool", k), "STEPIT": ("int64", k), "STEPS": ("int64", k), "IT": ("int64", k),
                "BX": ("float64", kn), "BH": ("float64", k), "BIT": ("int64", k)}
    return {"X": ("float64", kn), "G": ("float64", kn), "F": ("float64", k), "FH": ("float64", k),
            "M": ("float64", kn), "V": ("float64", kn), "ACT": ("bool", k), "IT": ("int64", k),
            "BX": ("float64", kn), "BH": ("float64", k), "BIT": ("int64", k)}


def empty_state(optimizer: str, size: int, history: int) -> dict[str, np.ndarray]:
    """The ``state_NAME`` values of a first run (``start`` = 0, not read): every array with 0 restarts."""
    return {STATE_IN + k: np.zeros(tuple(0 if d == "K" else d for d in shp), dtype)
            for k, (dtype, shp) in state_spec(optimizer, size, history).items()}


def _instantiate(nodes, prefix: str, inputs: dict[str, str]) -> tuple[list, dict[str, str]]:
    """Copies of ``nodes`` whose outputs (and node names) carry ``prefix``; the graph inputs they read are
    renamed by ``inputs``; every other name they read (weights, the operator's inputs) is left as it is.
    Returns the nodes and the map old output name -> new name."""
    onnx, _, _ = onnx_modules()
    produced: dict[str, str] = {}
    out = []
    for node in nodes:
        c = onnx.NodeProto()
        c.CopyFrom(node)
        c.input[:] = [produced.get(x, inputs.get(x, x)) if x else x for x in node.input]
        for k, o in enumerate(node.output):
            if o:
                produced[o] = prefix + o
                c.output[k] = prefix + o
        c.name = prefix + node.name
        out.append(c)
    return out, produced


def _add_inits(store: dict, inits) -> None:
    for t in inits:
        if t.name not in store:
            store[t.name] = t


def _merge_lifted(store: dict, lifted: dict) -> None:
    for k, v in lifted.items():
        prev = store.get(k)
        if prev is not None and not np.array_equal(prev, v):
            raise GSError(f"operator parameter {k} differs between graphs")
        store[k] = v


def recovery_model(manifest, cut: int, op, *, history: int = 100, optimizer: str = "lbfgs", name: str = "gs_recovery"):
    """The recovery graph (ModelProto) for ``manifest`` cut at ``cut`` and the operator ``op`` (which must have
    an ONNX form), and the values of the operator's inputs by name (the dense ``A``, the lifted ``op_*``
    tables). ``history``: L-BFGS pairs kept (the model's, normally 100); ``optimizer``: ``lbfgs`` (the paper's) or
    ``adam`` (torch.optim.Adam's update; inputs ``lr``, ``beta1``, ``beta2``, ``eps``, ``max_iterations``)."""
    if optimizer not in GRAPH_OPTIMIZERS:
        raise GSError(f"the recovery graph runs {' or '.join(GRAPH_OPTIMIZERS)}, not {optimizer!r}")
    onnx, helper, _ = onnx_modules()
    form = op.onnx_form()
    if form is None:
        raise GSError(f"{type(op).__name__} has no ONNX form: it cannot run inside the recovery graph")
    if op.n != manifest.n:
        raise GSError(f"operator has n = {op.n} but model {manifest.name} has n = {manifest.n}")
    h = int(history)
    if h < 1:
        raise GSError(f"history must be >= 1, got {history!r}")
    tail = G.load_tail(manifest, cut)
    size, m = tail.size, op.m
    C, H, Wd = manifest.image_shape
    inits: dict = {}
    lifted: dict = {}
    op_values = {k: np.ascontiguousarray(make(), np.float32) for k, (shape, make) in form.inputs.items()}

    ob, oinits = G.objective_builder(tail, form, b=Builder(lift=True, prefix="obj/"))
    _add_inits(inits, oinits)
    _add_inits(inits, ob.inits)
    _merge_lifted(lifted, ob.lifted)
    ib, iinits = G.image_builder(tail, form, b=Builder(lift=True, prefix="img/"))
    _add_inits(inits, iinits)
    _add_inits(inits, ib.inits)
    _merge_lifted(lifted, ib.lifted)

    b = Builder(prefix="rg/")
    i64 = lambda v: b.const(np.asarray(v, np.int64), "i")   # noqa: E731
    f64 = lambda v: b.const(np.float64(v), "d")              # noqa: E731
    ax1 = i64([1])
    ax2 = i64([2])

    def rsum(x, axes=ax1, keep=0):
        return b.op("ReduceSum", [x, axes], "sum", keepdims=keep)

    def where(cond, a, c):
        return b.op("Where", [cond, a, c], "where")

    def col(v):  # (K,) -> (K, 1)
        return b.op("Unsqueeze", [v, ax1], "col")

    def evaluate(z64: str, prefix: str):
        """f (K,) float64 with the prior, grad (K, size) float64, f_held (K,) float64 at z64 (K, size)."""
        z32 = b.op("Cast", [z64], "z32", to=FLOAT)
        nodes, names = _instantiate(ob.nodes, prefix, {G.Z: z32, G.Y: "gs_yK", G.W: "gs_wK"})
        b.nodes += nodes
        d = b.op("Mul", [b.op("Sub", [z64, "prior_mean"], "dz"), "prior_scale"], "dzs")
        f = b.op("Add", [names[G.F], rsum(b.op("Mul", [d, d], "d2"))], "f")
        g = b.op("Add", [b.op("Cast", [names[G.GRAD]], "g64", to=DOUBLE),
                         b.op("Mul", [b.op("Mul", [d, "prior_scale"], "ds"), f64(2.0)], "gp")], "g")
        return f, g, names[G.F_HELD]

    def moved(move: str, x_new: str, X: str, Fv: str, Gr: str, FH: str):
        """Rows that move take x_new and its f, g, f_held; the others keep theirs."""
        mcol = col(move)
        Xn = where(mcol, x_new, X)
        Fe, Ge, FHe = evaluate(Xn, "it/")
        return Xn, where(move, Fe, Fv), where(mcol, Ge, Gr), where(move, FHe, FH)

    def tracked(move: str, Xn: str, FHn: str, ITn: str, BX: str, BH: str, BIT: str):
        """The best iterate by held-out error (strictly lower replaces) and whether the patience ran out."""
        better = b.op("And", [move, b.op("Less", [FHn, BH], "lt")], "better")
        BITn = where(better, ITn, BIT)
        waited = b.op("And", [patient, b.op("Not", [b.op("Less", [b.op("Sub", [ITn, BITn], "since"), "patience"],
                                                            "fresh")], "stale")], "waited")
        return where(col(better), Xn, BX), where(better, FHn, BH), BITn, waited

    # ---- before the loop: rows, the budget; at start = 0 the start's evaluation and the zero history, else the
    # state fed back from the previous run (an If: a resumed run does not evaluate z0)
    K = b.op("Slice", [b.op("Shape", ["z0"], "zshape"), i64([0]), i64([1])], "K")
    b.op("Expand", ["y", b.op("Concat", [K, i64([m])], "ym", axis=0)], outputs=["gs_yK"])
    b.op("Expand", ["w", b.op("Concat", [K, i64([m])], "wm", axis=0)], outputs=["gs_wK"])
    patient = b.op("Greater", ["patience", i64(0)], "held")   # a held-out rule (read inside the loop too)
    total = b.op("Mul", ["steps", "step_iters"], "total") if optimizer == "lbfgs" else "max_iterations"
    init_at = len(b.nodes)
    X0 = b.op("Cast", ["z0"], "X0", to=DOUBLE)
    F0, G0, FH0 = evaluate(X0, "init/")
    zeros_kn = b.op("ConstantOfShape", [b.op("Concat", [K, i64([size])], "knshape", axis=0)], "zkn",
                    value=helper.make_tensor("v", DOUBLE, [1], [0.0]))   # (not X0 * 0: a NaN start stays NaN)
    zeros_k = b.op("ConstantOfShape", [K], "zk", value=helper.make_tensor("v", DOUBLE, [1], [0.0]))
    zeros_ki = b.op("ConstantOfShape", [K], "zki", value=helper.make_tensor("v", INT64, [1], [0]))
    if optimizer == "lbfgs":
        W0 = b.op("ConstantOfShape", [b.op("Concat", [K, i64([2 * h, size])], "wshape", axis=0)], "W0",
                  value=helper.make_tensor("v", FLOAT, [1], [0.0]))
        SY0 = b.op("ConstantOfShape", [b.op("Concat", [K, i64([h, h])], "gshape", axis=0)], "SY0",
                   value=helper.make_tensor("v", DOUBLE, [1], [0.0]))
        ones_k = b.op("Add", [zeros_k, f64(1.0)], "ones")
        act0 = b.op("Greater", [b.op("ReduceMax", [b.op("Abs", [G0], "ag"), ax1], "gmax", keepdims=0),
                                "tolerance_grad"], "act0")
        start_values = [X0, G0, F0, FH0, G0, zeros_kn, zeros_k, W0, SY0, SY0, ones_k, act0, zeros_ki, zeros_ki,
                        zeros_ki, X0, FH0, zeros_ki]
    else:
        act0 = b.op("Equal", [zeros_ki, zeros_ki], "act0")
        start_values = [X0, G0, F0, FH0, zeros_kn, zeros_kn, act0, zeros_ki, X0, FH0, zeros_ki]
    spec = state_spec(optimizer, size, h)
    init_nodes = b.nodes[init_at:]
    del b.nodes[init_at:]
    vi = helper.make_tensor_value_info
    fresh_out = [f"fresh/{k}" for k in spec]
    fed_out = [f"fed/{k}" for k in spec]
    begin = helper.make_graph(init_nodes + [helper.make_node("Identity", [v], [o], name=f"rg/begin_{o}")
                                            for v, o in zip(start_values, fresh_out)],
                              "begin", [], [vi(o, _ELEM[d], None) for o, (d, _) in zip(fresh_out, spec.values())])
    resume = helper.make_graph([helper.make_node("Identity", [STATE_IN + k], [o], name=f"rg/resume_{o}")
                                for k, o in zip(spec, fed_out)],
                               "resume", [], [vi(o, _ELEM[d], None) for o, (d, _) in zip(fed_out, spec.values())])
    initial = [f"s0/{k}" for k in spec]
    b.nodes.append(helper.make_node("If", [b.op("Equal", ["start", i64(0)], "fresh")], initial,
                                    name="rg/begin_or_resume", then_branch=begin, else_branch=resume))
    state = [(k, _ELEM[d], v) for (k, (d, _)), v in zip(spec.items(), initial)]
    act_init = dict(zip(spec, initial))["ACT"]
    trip = b.op("Min", ["chunk", b.op("Max", [b.op("Sub", [total, "start"], "left"), i64(0)], "remaining")], "trip")
    keep_going = b.op("Cast", [b.op("ReduceMax", [b.op("Cast", [act_init], "a64", to=INT64)], "anyact", keepdims=0)],
                      "cond0", to=BOOL)
    kk = "body/kk"   # the iteration's index counted from the first run's start
    if optimizer == "lbfgs":
        # ---- the loop body: one L-BFGS iteration of every row still running
        main_nodes = b.nodes
        b.nodes = []
        b.op("Add", ["body/k", "start"], outputs=[kk])
        s_in = {k: f"body/{k}" for k, _, _ in state}
        X, Gr, Fv, FH, GP, D, T, Wh, SY, YY, HD, ACT, STEPIT, STEPS, IT, BX, BH, BIT = (s_in[k] for k, _, _ in state)
        first = b.op("Equal", [kk, i64(0)], "first")
        yv = b.op("Sub", [Gr, GP], "yv")
        sv = b.op("Mul", [D, col(T)], "sv")
        ys = rsum(b.op("Mul", [yv, sv], "ysp"))
        yy = rsum(b.op("Mul", [yv, yv], "yyp"))
        upd = b.op("And", [b.op("And", [b.op("Not", [first], "later"), b.op("Greater", [ys, f64(CURVATURE_EPS)], "curv")],
                                "upd0"), ACT], "upd")
        upd3 = b.op("Unsqueeze", [upd, i64([1, 2])], "upd3")
        s32 = b.op("Unsqueeze", [b.op("Cast", [sv], "s32", to=FLOAT), ax1], "s3")
        y32 = b.op("Unsqueeze", [b.op("Cast", [yv], "y32", to=FLOAT), ax1], "y3")
        # products of the new pair with the old history: P (K, 2h, 2) = W [y, s]^T
        P = b.op("Cast", [b.op("MatMul", [Wh, b.op("Transpose", [b.op("Concat", [y32, s32], "V", axis=1)], "Vt",
                                                                     perm=[0, 2, 1])], "P32")], "P", to=DOUBLE)

        def sl(x, starts, ends, axes):
            return b.op("Slice", [x, i64(starts), i64(ends), i64(axes)], "sl")

        s_dot_ynew = sl(P, [1, 0], [h, 1], [1, 2])               # (K, h-1, 1): s_i . y_new, slots 1..h-1
        y_dot_snew = sl(P, [h + 1, 1], [2 * h, 2], [1, 2])       # (K, h-1, 1): y_j . s_new
        y_dot_ynew = sl(P, [h + 1, 0], [2 * h, 1], [1, 2])       # (K, h-1, 1): y_i . y_new

        def shifted(M, colv, rowv, diag):
            top = b.op("Concat", [sl(M, [1, 1], [h, h], [1, 2]), colv], "top", axis=2)                  # (K, h-1, h)
            row = b.op("Concat", [b.op("Transpose", [rowv], "rowt", perm=[0, 2, 1]),
                                  b.op("Unsqueeze", [diag, i64([1, 2])], "dg")], "row", axis=2)         # (K, 1, h)
            return b.op("Concat", [top, row], "shifted", axis=1)

        SYn = where(upd3, shifted(SY, s_dot_ynew, y_dot_snew, ys), SY)
        YYn = where(upd3, shifted(YY, y_dot_ynew, y_dot_ynew, yy), YY)
        # the history: shifted where a row takes the pair. Where() over (K, 2h, size) cost 6x a copy, so it only runs
        # when some rows take the pair and others do not (an If on all / none)
        w_shift = b.op("Concat", [sl(Wh, [1], [h], [1]), s32, sl(Wh, [h + 1], [2 * h], [1]), y32], "Wshift", axis=1)
        upd_i = b.op("Cast", [upd], "updi", to=INT64)
        every = b.op("Cast", [b.op("ReduceMin", [upd_i], "umin", keepdims=0)], "every", to=BOOL)
        none = b.op("Not", [b.op("Cast", [b.op("ReduceMax", [upd_i], "umax", keepdims=0)], "some", to=BOOL)], "none")
        Wn = b.fresh("Wn")
        mixed_out, keep_out, all_out, rest_out = (b.fresh(k) for k in ("Wmixed", "Wkeep", "Wall", "Wrest"))
        vi_f = helper.make_tensor_value_info
        mixed = helper.make_graph([helper.make_node("Where", [upd3, w_shift, Wh], [mixed_out], name=b.fresh("n_Where"))],
                                  "mixed", [], [vi_f(mixed_out, FLOAT, None)])
        keep = helper.make_graph([helper.make_node("Identity", [Wh], [keep_out], name=b.fresh("n_Identity"))],
                                 "keep", [], [vi_f(keep_out, FLOAT, None)])
        rest = helper.make_graph([helper.make_node("If", [none], [rest_out], name=b.fresh("n_If"), then_branch=keep,
                                                   else_branch=mixed)], "rest", [], [vi_f(rest_out, FLOAT, None)])
        take = helper.make_graph([helper.make_node("Identity", [w_shift], [all_out], name=b.fresh("n_Identity"))],
                                 "all", [], [vi_f(all_out, FLOAT, None)])
        b.nodes.append(helper.make_node("If", [every], [Wn], name=b.fresh("n_If"), then_branch=take, else_branch=rest))
        HDn = where(upd, b.op("Div", [ys, b.op("Max", [yy, f64(1e-300)], "yys")], "hd"), HD)
        # the direction d = -H g: the two-loop recursion written on the Gram matrices (the compact form's numbers)
        eye = b.const(np.eye(h), "eye")
        diag = rsum(b.op("Mul", [SYn, eye], "sdiag"), ax2)                                              # (K, h)
        rho = where(b.op("Greater", [diag, f64(0.0)], "valid"),
                    b.op("Div", [f64(1.0), b.op("Max", [diag, f64(1e-300)], "dsafe")], "inv"), b.op("Mul", [diag, f64(0.0)], "z"))
        g32 = b.op("Unsqueeze", [b.op("Cast", [Gr], "g32", to=FLOAT), i64([2])], "g3")
        ab = b.op("Squeeze", [b.op("Cast", [b.op("MatMul", [Wn, g32], "ab32")], "ab64", to=DOUBLE), ax2], "ab")  # (K, 2h)
        a = sl(ab, [0], [h], [1])
        bb = sl(ab, [h], [2 * h], [1])
        rho_na = b.op("Mul", [rho, b.op("Neg", [a], "na")], "rhona")
        Mrho = b.op("Mul", [SYn, b.op("Unsqueeze", [rho, ax2], "rho3")], "Mrho")                         # rho_i SY[i, j]
        alpha = b.op("Mul", [rho, f64(0.0)], "alpha0")
        E = [b.const(np.eye(h)[i], f"e{i}") for i in range(h)]
        for i in range(h - 1, -1, -1):
            t = rsum(b.op("Mul", [b.op("Gather", [Mrho, i64(i)], "mrow", axis=1), alpha], "ma"), keep=1)
            alpha = b.op("Add", [alpha, b.op("Mul", [b.op("Sub", [rho_na, t], "ai"), E[i]], "ae")], "alpha")
        u = b.op("Squeeze", [b.op("MatMul", [YYn, b.op("Unsqueeze", [alpha, ax2], "a3")], "u3"), ax2], "u")
        gam = col(HDn)
        rho_c = b.op("Mul", [rho, b.op("Mul", [gam, b.op("Neg", [b.op("Add", [bb, u], "bu")], "nbu")], "gb")], "rhoc")
        Nrho = b.op("Mul", [b.op("Transpose", [SYn], "SYt", perm=[0, 2, 1]), b.op("Unsqueeze", [rho, ax2], "rho3b")],
                    "Nrho")                                                                              # rho_i SY[j, i]
        a_minus = b.op("Sub", [alpha, rho_c], "amr")
        delta = b.op("Mul", [rho, f64(0.0)], "delta0")
        for i in range(h):
            t = rsum(b.op("Mul", [b.op("Gather", [Nrho, i64(i)], "nrow", axis=1), delta], "nd"), keep=1)
            delta = b.op("Add", [delta, b.op("Mul", [b.op("Sub", [a_minus, t], "di"), E[i]], "de")], "delta")
        coef = b.op("Concat", [delta, b.op("Neg", [b.op("Mul", [gam, alpha], "ga")], "nga")], "coef", axis=1)
        comb = b.op("MatMul", [b.op("Unsqueeze", [b.op("Cast", [coef], "c32", to=FLOAT), ax1], "c3"), Wn], "comb")
        Dn = b.op("Sub", [b.op("Cast", [b.op("Squeeze", [comb, ax1], "comb2")], "comb64", to=DOUBLE),
                          b.op("Mul", [gam, Gr], "gg")], "Dn")
        # the step: min(1, 1/|g|_1) lr at the first iteration, lr after; rows whose direction does not descend stop
        l1 = rsum(b.op("Abs", [Gr], "absg"))
        t_first = b.op("Mul", [b.op("Min", [f64(1.0), b.op("Div", [f64(1.0), l1], "inv1")], "t1"), "lr"], "tf")
        Tn = where(first, t_first, b.op("Expand", ["lr", b.op("Shape", [l1], "l1shape")], "tl"))
        gtd = rsum(b.op("Mul", [Gr, Dn], "gd"))
        move = b.op("And", [ACT, b.op("Not", [b.op("Greater", [gtd, b.op("Neg", ["tolerance_change"], "ntc")], "flat")],
                                      "desc")], "move")
        mcol = col(move)
        step = b.op("Mul", [Dn, col(Tn)], "step")
        Xn, Fn, Gn, FHn = moved(move, b.op("Add", [X, step], "xs"), X, Fv, Gr, FH)
        GPn = where(mcol, Gr, GP)
        Dk = where(mcol, Dn, D)
        Tk = where(move, Tn, T)
        inc = b.op("Cast", [move], "inc", to=INT64)
        STEPITn = b.op("Add", [STEPIT, inc], "stepit")
        ITn = b.op("Add", [IT, inc], "it")
        gsmall = b.op("Not", [b.op("Greater", [b.op("ReduceMax", [b.op("Abs", [Gn], "agn"), ax1], "gmx", keepdims=0),
                                               "tolerance_grad"], "gbig")], "gsmall")
        small_step = b.op("Not", [b.op("Greater", [b.op("ReduceMax", [b.op("Abs", [step], "ast"), ax1], "smx",
                                                         keepdims=0), "tolerance_change"], "sbig")], "sstep")
        small_change = b.op("Less", [b.op("Abs", [b.op("Sub", [Fn, Fv], "df")], "adf"), "tolerance_change"], "schg")
        ends = b.op("And", [move, b.op("Or", [b.op("Or", [b.op("Equal", [STEPITn, "step_iters"], "full"), small_step],
                                                     "e1"), b.op("Or", [small_change, gsmall], "e2")], "e3")], "ends")
        STEPSn = b.op("Add", [STEPS, b.op("Cast", [ends], "endi", to=INT64)], "steps")
        STEPITn = where(ends, b.op("Mul", [STEPITn, i64(0)], "z0i"), STEPITn)
        BXn, BHn, BITn, waited = tracked(move, Xn, FHn, ITn, BX, BH, BIT)
        ACTn = b.op("And", [b.op("And", [move, b.op("Not", [gsmall], "gok")], "a1"),
                            b.op("And", [b.op("Less", [STEPSn, "steps"], "budget"), b.op("Not", [waited], "pok")],
                                  "a2")], "act")
        cond = b.op("Cast", [b.op("ReduceMax", [b.op("Cast", [ACTn], "acti", to=INT64)], "any", keepdims=0)],
                    "cond", to=BOOL)
        outs = [Xn, Gn, Fn, FHn, GPn, Dk, Tk, Wn, SYn, YYn, HDn, ACTn, STEPITn, STEPSn, ITn, BXn, BHn, BITn]
    else:  # Adam (torch.optim.Adam's update), one evaluation per iteration
        main_nodes = b.nodes
        b.nodes = []
        b.op("Add", ["body/k", "start"], outputs=[kk])
        s_in = {k: f"body/{k}" for k, _, _ in state}
        X, Gr, Fv, FH, M1, M2, ACT, IT, BX, BH, BIT = (s_in[k] for k, _, _ in state)
        t = b.op("Cast", [b.op("Add", [kk, i64(1)], "t1")], "t", to=DOUBLE)
        one = f64(1.0)
        M1n = b.op("Add", [b.op("Mul", ["beta1", M1], "bm"), b.op("Mul", [b.op("Sub", [one, "beta1"], "ob1"), Gr], "gm")],
                   "m1")
        M2n = b.op("Add", [b.op("Mul", ["beta2", M2], "bv"),
                           b.op("Mul", [b.op("Sub", [one, "beta2"], "ob2"), b.op("Mul", [Gr, Gr], "g2")], "gv")], "m2")
        bc1 = b.op("Sub", [one, b.op("Pow", ["beta1", t], "b1t")], "bc1")
        bc2 = b.op("Sub", [one, b.op("Pow", ["beta2", t], "b2t")], "bc2")
        denom = b.op("Add", [b.op("Div", [b.op("Sqrt", [M2n], "sv"), b.op("Sqrt", [bc2], "sbc2")], "dn"), "eps"], "den")
        step = b.op("Mul", [b.op("Div", ["lr", bc1], "ss"), b.op("Div", [M1n, denom], "md")], "step")
        move = ACT
        mcol = col(move)
        Xn, Fn, Gn, FHn = moved(move, b.op("Sub", [X, step], "xs"), X, Fv, Gr, FH)
        M1k = where(mcol, M1n, M1)
        M2k = where(mcol, M2n, M2)
        ITn = b.op("Add", [IT, b.op("Cast", [move], "inc", to=INT64)], "it")
        BXn, BHn, BITn, waited = tracked(move, Xn, FHn, ITn, BX, BH, BIT)
        ACTn = b.op("And", [move, b.op("Not", [waited], "pok")], "act")
        cond = b.op("Cast", [b.op("ReduceMax", [b.op("Cast", [ACTn], "acti", to=INT64)], "any", keepdims=0)],
                    "cond", to=BOOL)
        outs = [Xn, Gn, Fn, FHn, M1k, M2k, ACTn, ITn, BXn, BHn, BITn]
    b.op("Identity", [Fn], outputs=["body/trace"])
    body_nodes = b.nodes
    # name the body's outputs
    out_names = [f"body/{k}_out" for k, _, _ in state]
    for o, nm in zip(outs, out_names):
        body_nodes.append(helper.make_node("Identity", [o], [nm], name=f"rg/out_{nm}"))
    body_nodes.append(helper.make_node("Identity", [cond], ["body/cond_out"], name="rg/out_cond"))
    body_in = [vi("body/k", INT64, []), vi("body/cond", BOOL, [])] + [vi(s_in[k], t, None) for k, t, _ in state]
    body_out = [vi("body/cond_out", BOOL, [])] + [vi(nm, t, None) for nm, (_, t, _) in zip(out_names, state)] + \
        [vi("body/trace", DOUBLE, None)]
    body = helper.make_graph(body_nodes, f"{optimizer}_iteration", body_in, body_out)
    b.nodes = main_nodes
    finals = [f"final/{k}" for k, _, _ in state]
    b.nodes.append(helper.make_node("Loop", [trip, keep_going] + [v for _, _, v in state], finals + ["objective"],
                                    name="rg/loop", body=body))
    fin = dict(zip([k for k, _, _ in state], finals))
    for k in spec:
        b.op("Identity", [fin[k]], outputs=[STATE_OUT + k])
    more = b.op("Cast", [b.op("ReduceMax", [b.op("Cast", [fin["ACT"], ], "fact", to=INT64)], "anyfin", keepdims=0)],
                "more", to=BOOL)
    b.op("And", [more, b.op("Less", [b.op("Add", ["start", "chunk"], "reached"), total], "unspent")], outputs=["running"])

    # ---- after the loop: each row's answer, the winner, the images
    Zsel = where(b.op("Unsqueeze", [b.op("Expand", [patient, K], "pk"), ax1], "pk2"), fin["BX"], fin["X"])
    Z32 = b.op("Cast", [Zsel], "Z32", to=FLOAT)
    nodes, names = _instantiate(ib.nodes, "fin/", {G.Z: Z32, G.Y: "gs_yK", G.W: "gs_wK"})
    b.nodes += nodes
    b.op("Where", [b.op("Expand", [patient, K], "pk3"), fin["BH"], names[G.ERR]], outputs=["score"])
    b.op("ArgMin", ["score"], outputs=["winner"], axis=0, keepdims=0)
    b.op("Gather", [names[G.ERR], "winner"], outputs=["residual"], axis=0)
    b.op("Clip", [names[G.X01], b.const(np.float32(0.0), "lo"), b.const(np.float32(1.0), "hi")], outputs=["images"])
    b.op("Gather", ["images", "winner"], outputs=["image"], axis=0)
    b.op("Gather", [Z32, "winner"], outputs=["latent"], axis=0)
    b.op("Identity", [fin["IT"]], outputs=["iterations"])
    b.op("Identity", [fin["BIT"]], outputs=["best_iteration"])

    graph_inputs = [vi("z0", FLOAT, ["K", size]), vi("y", FLOAT, [1, m]), vi("w", FLOAT, [1, m]),
                    vi("prior_mean", DOUBLE, [size]), vi("prior_scale", DOUBLE, [size])]
    graph_inputs += [vi(k, _ELEM[t], []) for k, (t, shp) in INPUTS.items() if shp == () and k in SCALARS[optimizer]]
    graph_inputs += [vi("start", INT64, []), vi("chunk", INT64, [])]
    graph_inputs += [vi(STATE_IN + k, _ELEM[d], ["K_state" if x == "K" else x for x in shp]) for k, (d, shp) in spec.items()]
    graph_inputs += [vi(k, FLOAT, list(shape)) for k, (shape, _) in form.inputs.items()]
    graph_inputs += [vi(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)) for k, v in lifted.items()]
    graph_outputs = [vi("image", FLOAT, [C, H, Wd]), vi("images", FLOAT, ["K", C, H, Wd]), vi("latent", FLOAT, [size]),
                     vi("winner", INT64, []), vi("score", DOUBLE, ["K"]), vi("objective", DOUBLE, ["iterations", "K"]),
                     vi("iterations", INT64, ["K"]), vi("best_iteration", INT64, ["K"]), vi("running", BOOL, []),
                     vi("residual", DOUBLE, [])]
    graph_outputs += [vi(STATE_OUT + k, _ELEM[d], list(shp)) for k, (d, shp) in spec.items()]
    _add_inits(inits, b.inits)
    graph = helper.make_graph(b.nodes, name, graph_inputs, graph_outputs, list(inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = G.IR_VERSION
    values = dict(op_values)
    values.update(lifted)
    return model, values
# ------------------------------------------------------------------------------------------ inputs and plans

#: The meaning of every input and output, as recovery.json and docs/recovery-graph.md give it.
MEANING = {
    "z0": "start latents, one row per restart: the cut's inputs packed in the manifest's order, each flattened "
          "in C order",
    "y": "the measurements of one image",
    "w": "row weights: 1 on the measurements fitted, 0 on those held out for the stopping rule",
    "prior_mean": "skip prior: per packed value, the generator's mean activation (0 where no prior applies)",
    "prior_scale": "skip prior: per packed value, sqrt(weight / values of its input) / std (0: no prior); the term "
                   "added to the objective is sum(((z - prior_mean) * prior_scale)^2)",
    "lr": "learning rate (L-BFGS: the fixed step, the first one min(1, 1/|g|_1) * lr; Adam: torch's lr)",
    "beta1": "Adam: decay of the gradient's running mean", "beta2": "Adam: decay of its running square",
    "eps": "Adam: added to the denominator", "max_iterations": "Adam: iterations per restart at most",
    "tolerance_grad": "a row stops when max |gradient| <= this",
    "tolerance_change": "torch's tolerance_change: ends a step() when the step or the loss change is below it; a "
                        "row stops when its direction does not descend by more than it",
    "steps": "torch step() calls per restart",
    "step_iters": "iterations per step() call (torch's max_iter)",
    "patience": "0: fixed budget, the winner is the lowest ||A clamp(G(z)) - y||; > 0: each row returns its "
                "iterate of lowest held-out error and stops after this many iterations without a better one; "
                "the winner is the lowest held-out error",
    "image": "the winner's image in [0, 1]",
    "residual": "||A image - y||, every measurement (what the fit is read from: docs/recovery-graph.md, section 7)",
    "images": "every restart's image in [0, 1]",
    "latent": "the winner's packed latents",
    "winner": "the index of the winning restart",
    "score": "the winner rule's number per restart (measurement error, or held-out error)",
    "objective": "the objective after every iteration, per restart (rows that stopped repeat their last value)",
    "iterations": "iterations each restart ran",
    "best_iteration": "the iterate each restart returned under a held-out rule (0 under a fixed budget)",
    "start": "iterations run before this run: 0 starts from z0 (the state inputs are not read); to continue, the "
             "previous start + chunk, with every next_NAME output fed back as state_NAME",
    "chunk": "iterations this run may take at most (the whole budget: one run does the recovery)",
    "running": "true when some restart would continue in a further run (feed the state back, start + chunk)",
}
for _k in ("X", "G", "F", "FH", "GP", "D", "T", "W", "SY", "YY", "HD", "ACT", "STEPIT", "STEPS", "IT", "BX", "BH",
           "BIT", "M", "V"):
    MEANING[STATE_IN + _k] = f"loop state {_k} from the previous run's {STATE_OUT}{_k} (not read at start = 0: empty)"
    MEANING[STATE_OUT + _k] = f"loop state {_k} after this run: feed it as {STATE_IN}{_k} to continue"


def interface_outputs(optimizer: str, size: int, history: int) -> dict[str, tuple[str, tuple]]:
    """Every output of a recovery graph: :data:`OUTPUTS`, ``running`` and the loop state ``next_NAME``."""
    out = dict(OUTPUTS)
    out["running"] = ("bool", ())
    out.update({STATE_OUT + k: v for k, v in state_spec(optimizer, size, history).items()})
    return out


def resume_spec(optimizer: str, size: int, history: int) -> dict:
    """recovery.json's ``resume``: the names a client needs to run the graph in chunks."""
    return {"start": "start", "chunk": "chunk", "running": "running",
            "state": {STATE_IN + k: STATE_OUT + k for k in state_spec(optimizer, size, history)}}


def prior_arrays(man, cut: int, layout, prior) -> tuple[np.ndarray, np.ndarray]:
    """``prior_mean`` and ``prior_scale`` (size,) float64 for a :class:`gs_onnx.solve.skipprior.SkipPrior` (or
    None: zeros, no prior): ``weight * mean(((h - mu) / sd)^2)`` per input equals
    ``sum(((z - prior_mean) * prior_scale)^2)`` over its packed values."""
    mean = np.zeros(layout.size)
    scale = np.zeros(layout.size)
    if prior is None or not prior.active:
        return mean, scale
    start = 0
    for name in layout.names:
        k = layout.sizes[name]
        if name in prior.mean:
            c = layout.shapes[name][0]
            mean[start:start + k] = np.repeat(prior.mean[name], k // c)
            scale[start:start + k] = np.sqrt(prior.weight / k) / np.repeat(prior.std[name], k // c)
        start += k
    return mean, scale


def progress_words(iterations: int, budget: int, out: dict) -> str:
    """A progress line after a run of the graph: the iterations reached and the best restart's objective."""
    words = f"iteration {iterations}/{budget}"
    return words + (f", objective {float(out['objective'][-1].min()):.4g}" if len(out["objective"]) else "")


class GraphRecovery:
    """A recovery graph in one ONNX Runtime session: ``run(inputs)`` -> the outputs by name.

    Parameters
    ----------
    model : ModelProto or serialized bytes
    device : "auto" | "cpu" | "cuda"; threads: intra-op threads (0: all cores)
    """

    def __init__(self, model, device: str = "cpu", threads: int = 0):
        from ..engine.runtime import create_session, resolve_device

        data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        self.device = resolve_device(device).name
        self.session = create_session(bytes(data), self.device, threads)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray], *, chunk: int | None = None, progress=None) -> dict[str, np.ndarray]:
        """The outputs of a recovery. With ``chunk`` (a graph that resumes: section 8 of docs/recovery-graph.md),
        runs of at most ``chunk`` iterations with the loop state fed back, ``progress(iterations, budget, outputs)``
        after each; the result is the one run's (bit for bit), ``objective`` the whole trace."""
        if chunk is None or "start" not in self.inputs:
            return self._run(inputs)
        feed, start, traces = dict(inputs), int(inputs["start"]), []
        budget = int(inputs["chunk"])
        runs, most = 0, -(-budget // max(1, int(chunk))) + 1   # a graph whose `running` never falls stops here
        while True:
            runs += 1
            if runs > most:
                raise GSError(f"the recovery graph is still running after {most} runs of {chunk} iterations, past its "
                              f"plan's {budget}: refused (docs/recovery-graph.md, rule 9)")
            feed.update(start=np.asarray(start, np.int64), chunk=np.asarray(max(1, int(chunk)), np.int64))
            out = self._run(feed)
            traces.append(out["objective"])
            if progress is not None:
                progress(int(out["iterations"].max()), budget, out)
            if not out["running"]:
                out["objective"] = np.concatenate(traces)
                return out
            feed.update({k: out[STATE_OUT + k[len(STATE_IN):]] for k in feed if k.startswith(STATE_IN)})
            start += max(1, int(chunk))

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.inputs) - set(inputs))
        if missing:
            raise GSError(f"the recovery graph needs the input {missing[0]!r}, which was not given")
        extra = sorted(set(inputs) - set(self.inputs))
        if extra:
            raise GSError(f"the recovery graph has no input {extra[0]!r}")
        feed = {k: np.asarray(v, order="C") for k, v in inputs.items()}
        try:
            return dict(zip(self.outputs, interruptible_run(self.session, self.outputs, feed)))
        except Exception as e:   # onnxruntime's own exceptions (shapes the graph's declared inputs do not fix)
            if type(e).__module__.split(".")[0] != "onnxruntime":
                raise
            raise GSError(f"the recovery graph failed to run: {str(e).splitlines()[0][:300]}") from None
