"""gs run by the recovery graph (``gs-recover --method gs --engine recovery-graph``): the whole recovery, the paper's
L-BFGS (or Adam), the held-out stopping rule, the skip prior and the winner among restarts, in one ONNX ``Loop``
(:mod:`gs_onnx.solve.recovery_graph`); and :func:`plan_inputs`, the graph's inputs for a recovery that
``gs-export recovery`` writes to a folder."""
from __future__ import annotations

import numpy as np

from ...errors import GSError
from ...physics.datafit import measurement_error
from ..settings import OPTIMIZER_WORDS, adam_settings, cut_for, lbfgs_lr, model_for, recovery_plan, restart_budget
from ._restart import skip_prior_for

#: The methods a recovery graph runs (gs-pnp: GS, then its PnP stage, :mod:`gs_onnx.solve.pnp_graph`; gs-tv: GS,
#: then its TV stage, :mod:`gs_onnx.solve.tv_graph`).
GRAPH_METHODS = ("gs", "gs-pnp", "gs-tv")

#: ``gs-recover --engine recovery-graph``: gs run by the recovery graph (gs_onnx.solve.recovery_graph), one session
#: run per image.
GRAPH_ENGINE = "recovery-graph"


#: Iterations per run of the recovery graph, so that gs-recover can show progress: the chunks give the one run's
#: result bit for bit; measured cost 0.92-1.03x the one run (dcgan), 0.99-1.03x (began), 3 rounds (docs/recovery-graph.md).
GRAPH_CHUNK = 20


class GraphSolver:
    """gs (or gs-pnp) whose whole recovery runs in the recovery graph: the same plan, start latents, held-out rows,
    skip prior and winner rule as ``gs-recover --optimizer lbfgs`` (and gs-pnp's PnP stage), with no host loop
    (``--engine recovery-graph``)."""

    unit = "iterations"
    batch = "none"
    batch_size = 1

    def __init__(self, y: np.ndarray, sidecar: dict, s, op=None, method: str = "gs"):
        from ...physics import operator_for
        from ..recovery_graph import GraphRecovery, recovery_model

        if s.optimizer not in (None, "lbfgs", "adam") or s.line_search not in (None, "none"):
            raise GSError("--engine recovery-graph runs the paper's L-BFGS without line search (--optimizer lbfgs) "
                          "or Adam (--optimizer adam)")
        for flag, v in (("--batch", s.batch), ("--batch-size", s.batch_size), ("--operator-on", s.operator_on),
                        ("--cuda-graph", s.cuda_graph), ("--max-fun", s.max_fun)):
            if v is not None:
                raise GSError(f"{flag} does not apply to --engine recovery-graph")
        man = model_for(sidecar, s)
        self.man, self.s, self.cut = man, s, cut_for(man, s)
        self.op = operator_for(sidecar) if op is None else op
        history = restart_budget(man).history
        self.model, self.values = recovery_model(man, self.cut, self.op, history=history,
                                                 optimizer=s.optimizer or "lbfgs")
        self.method, pnp_plan, tv_plan = method, None, None
        if method == "gs-pnp":
            from ..pnp_graph import graph_stage

            from ..pnp import noise_level, wants_noise

            # a plan polishing at the noise level: the sidecar's sigma, else the first image's estimate (one graph)
            noise = noise_level(sidecar, np.asarray(y, np.float32).reshape(-1, self.op.m)[0], self.op) \
                if wants_noise((self.op.describe() or {}).get("type")) else None
            self.model, stage, pnp_plan, _, _ = graph_stage(self.model, man, self.op, s.denoiser, s.models_dir, noise)
            self.values = {**self.values, **stage}
        elif method == "gs-tv":
            from ..tv_graph import graph_stage as tv_stage

            self.model, stage, tv_plan, _, _ = tv_stage(self.model, man, self.op, s.lam, s.gamma)
            self.values = {**self.values, **stage}
        self.runner = GraphRecovery(self.model, s.device, s.threads)
        provider = self.runner.session.get_providers()[0]
        _, plan = plan_inputs(man, self.cut, self.op, np.asarray(y, np.float32).reshape(-1, self.op.m)[0], s, 0,
                              holdout_rows=method == "gs-pnp")
        self.note = None
        self.disagreement: dict[int, np.ndarray] = {}
        self.how = f"in one ONNX graph on {provider}"
        self.provider = provider
        self.header = {"model": man.name, "model_dir": str(man.root), "cut": self.cut, "engine": GRAPH_ENGINE,
                       "device": s.device, "provider": provider, "restarts": plan["restarts"],
                       "init": plan["init"], "seed": s.seed,
                       "budget": {"optimizer": plan["optimizer"], "max_iter": plan["max_iter"],
                                  "history": plan["history"], "lr": plan["lr"], "plan": s.budget or "auto",
                                  **{k: plan[k] for k in ("steps", "step_iters", "betas", "eps") if k in plan}},
                       "stopping": plan["stopping"], "skip_prior": plan["skip_prior"]}
        if pnp_plan is not None:
            self.header["pnp"] = pnp_plan
            self.how += " (GS + PnP)"
        if tv_plan is not None:
            self.header["tv"] = tv_plan
            self.how += " (GS + TV)"

    def solve(self, i: int, y: np.ndarray, progress):
        from ...metrics import disagreement
        from ..recovery_graph import progress_words

        inputs, plan = plan_inputs(self.man, self.cut, self.op, y, self.s, i, holdout_rows=self.method == "gs-pnp")
        progress(0.0, "running the recovery graph")
        out = self.runner.run({**inputs, **self.values}, chunk=GRAPH_CHUNK,
                              progress=lambda it, budget, o: progress(it / max(budget, 1), progress_words(it, budget, o)))
        image = out["image"]
        win = int(out["winner"])
        K = len(out["score"])
        restarts = [{"restart": r, "iterations": int(out["iterations"][r]), "score": float(out["score"][r]),
                     "best_iteration": int(out["best_iteration"][r]),
                     "objective": float(out["objective"][-1, r]) if len(out["objective"]) else None}
                    for r in range(K)]
        fields = {"measurement_error": measurement_error(self.op, image, y), "objective": restarts[win]["objective"],
                  "evaluations": int(out["iterations"].sum()) + K, "best_restart": win, "restarts": restarts}
        if K >= 2:
            self.disagreement[i], fields["disagreement"] = disagreement(out["images"])
        if "pnp_chosen" in out:
            names = ["gs"] + list(self.header["pnp"]["candidates"])
            fields["gs_measurement_error"] = measurement_error(self.op, out["gs_image"], y)
            fields["pnp"] = {"chosen": names[int(out["pnp_chosen"])],
                             "held_out": dict(zip(names, (float(v) for v in out["pnp_held_out"]))),
                             "iterations": dict(zip(names[1:], (int(v) for v in out["pnp_rows_iterations"])))}
            self.last_gs_image = out["gs_image"]
        if "tv_iterations" in out:
            fields["gs_measurement_error"] = measurement_error(self.op, out["gs_image"], y)
            fields["tv"] = {"iterations": int(out["tv_iterations"]), "objective": float(out["tv_objective"]),
                            "converged": bool(out["tv_converged"])}
            self.last_gs_image = out["gs_image"]
        progress(1.0, "done")
        return image, fields


def plan_inputs(man, cut: int, op, y: np.ndarray, s, image_index: int = 0,
                holdout_rows: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Every input of the recovery graph but the operator's, as ``gs-recover --optimizer lbfgs`` would run image
    ``image_index`` of a file with settings ``s`` (:class:`gs_onnx.solve.settings.Settings`): its start latents
    (``init``, seed ``s.seed + image_index``), held-out rows, skip prior, L-BFGS numbers and stopping plan.
    ``holdout_rows``: a fixed plan holds rows out all the same (gs-pnp chooses on rows GS never fitted:
    :func:`gs_onnx.solve.pnp.held_out_rule`). Returns (inputs, plan description)."""
    from ...generator.latent import LatentLayout
    from ..recovery_graph import empty_state, prior_arrays
    from ..restart import lbfgs_settings, start_points
    from ..stopping import holdout_mask

    kind = (op.describe() or {}).get("type")
    restarts, budget, rule = recovery_plan(man, s, kind, True)
    if holdout_rows:
        from ..pnp import held_out_rule

        rule = held_out_rule(rule, budget.max_iter)
    if rule.name == "refit":
        raise GSError("the recovery graph runs the fixed and held-out rules, not refit: use --stop holdout")
    optimizer = s.optimizer or "lbfgs"
    tail_shapes = {n: tuple(man.tensors[n]) for n in man.cut(cut).inputs}
    layout = LatentLayout(tail_shapes)
    seed = int(s.seed) + int(image_index)
    init = s.init or "cn01"
    z0 = np.stack(start_points(init, layout.size, seed, restarts)).astype(np.float32)
    y = np.asarray(y, np.float32).reshape(1, -1)
    w = (holdout_mask(op.m, rule.holdout, seed) if rule.uses_holdout else np.ones(op.m, np.float32))[None]
    mean, scale = prior_arrays(man, cut, layout, skip_prior_for(man, cut, s))
    inputs = {"z0": z0, "y": y, "w": w, "prior_mean": mean, "prior_scale": scale,
              "patience": np.asarray(rule.patience if rule.uses_holdout else 0, np.int64),
              "start": np.asarray(0, np.int64), **empty_state(optimizer, layout.size, budget.history)}
    plan = {"restarts": restarts, "max_iter": budget.max_iter, "history": budget.history, "stopping": rule.describe(),
            "optimizer": OPTIMIZER_WORDS[optimizer], "init": init, "seed": seed, "skip_prior": bool(scale.any())}
    if optimizer == "adam":
        st = adam_settings(s, budget)
        inputs.update(lr=np.asarray(st.lr, np.float64), beta1=np.asarray(st.beta1, np.float64),
                      beta2=np.asarray(st.beta2, np.float64), eps=np.asarray(st.eps, np.float64),
                      max_iterations=np.asarray(st.iterations, np.int64), chunk=np.asarray(st.iterations, np.int64))
        plan.update(lr=st.lr, betas=[st.beta1, st.beta2], eps=st.eps)
        return inputs, plan
    st = lbfgs_settings(budget, lbfgs_lr(man, s))
    inputs.update(lr=np.asarray(st.lr, np.float64), tolerance_grad=np.asarray(st.tolerance_grad, np.float64),
                  tolerance_change=np.asarray(st.tolerance_change, np.float64),
                  steps=np.asarray(st.steps, np.int64), step_iters=np.asarray(st.max_iter, np.int64),
                  chunk=np.asarray(st.steps * st.max_iter, np.int64))
    plan.update(lr=st.lr, steps=st.steps, step_iters=st.max_iter)
    return inputs, plan
