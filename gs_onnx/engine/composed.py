"""The composed objective: the whole GS objective in one ONNX Runtime session, tensors kept where it runs.

:class:`Engine` holds the sessions of one (model, cut, operator, device); :class:`ComposedObjective` is an
engine plus the measurements of one image (or one per row), with the interface of
:class:`gs_onnx.solve.objective.Objective` (the per-block reference path), so :func:`gs_onnx.solve.restart.recover` and the
lockstep batches drive either.

Per evaluation only the latents go in and f, the gradient and the held-out loss come out: ``A`` is bound
once, ``y`` and ``w`` when they change, and with IOBinding every input and output lives in a buffer
allocated once per batch size (on a GPU: device memory; CUDA graphs replay on top of it).

Where the operator is applied (``operator_on``): ``graph`` puts its ONNX form inside the objective graph;
``host`` runs it in numpy/scipy between a forward and a VJP session, the environment staying on the device.
``auto`` (the default) picks per device what measured faster (docs/benchmarks.md): on the CPU the dense
Gaussian in the graph and the DCT operator on the host (scipy's real DCT beats ONNX Runtime's complex DFT);
on CUDA everything in the graph, so that nothing but z, f and the gradient crosses the bus.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import GSError
from ..generator.latent import LatentLayout
from ..generator.manifest import Manifest
from ..physics import Operator
from . import graph as G
from .runtime import CPU, CUDA, Device, create_session, describe_placement, placement, resolve_device

OPERATOR_PLACES = ("auto", "graph", "host")


def default_operator_place(op: Operator, device_name: str) -> str:
    """Where ``auto`` applies ``op`` on ``device_name``: on CUDA in the graph whenever the operator has an ONNX
    form (nothing but z, f and the gradient crosses the bus); on the CPU where the operator says it is faster
    (:meth:`gs_onnx.physics.Operator.cpu_place`, measured: docs/benchmarks.md)."""
    if op.onnx_form() is None:
        return "host"
    if device_name != "cpu":
        return "graph"
    return op.cpu_place()


class _Slot:
    """Buffers for one batch size: numpy arrays on the CPU (shared with their OrtValues), device OrtValues
    on a GPU."""

    def __init__(self, ort, device: str, specs: dict[str, tuple[tuple[int, ...], Any]]):
        self.device, self.values, self.arrays = device, {}, {}
        for name, (shape, dtype) in specs.items():
            if device == "cpu":
                a = np.zeros(shape, dtype=dtype)
                self.arrays[name] = a
                self.values[name] = ort.OrtValue.ortvalue_from_numpy(a)
            else:
                self.values[name] = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, device, 0)
        self.last: dict[str, np.ndarray] = {}

    def put(self, name: str, value: np.ndarray, cache: bool = False) -> None:
        """Copy ``value`` into the buffer ``name``; with ``cache`` skip the copy when it equals the last one."""
        if cache:
            prev = self.last.get(name)
            if prev is not None and prev.shape == value.shape and np.array_equal(prev, value):
                return
            self.last[name] = value.copy()
        if self.device == "cpu":
            np.copyto(self.arrays[name], value, casting="same_kind")
        else:
            self.values[name].update_inplace(np.ascontiguousarray(value))

    def get(self, name: str) -> np.ndarray:
        if self.device == "cpu":
            return self.arrays[name]
        return self.values[name].numpy()


class Engine:
    """The sessions of the composed objective for one (model, cut, operator, device).

    Parameters
    ----------
    manifest : a loaded model
    cut : 0 <= cut < depth
    op : the measurement operator (``op.n`` = the model's C*H*W)
    device : "auto" | "cpu" | "cuda"
    threads : ONNX Runtime intra-op threads (0: all cores)
    operator_on : "auto" | "graph" | "host" (see the module docstring)
    iobinding : bind preallocated buffers (default) instead of passing numpy arrays to ``run``
    cuda_graph : capture and replay CUDA graphs (CUDA only; one session per batch size, static shapes)
    static_batch : one session per batch size with static shapes (default: on the CPU, where it measured
        faster; always with CUDA graphs), instead of one session with a dynamic batch axis

    Attributes
    ----------
    size, shapes, inputs : the cut's free values (packed size, per-input shapes, names in packing order)
    provider : the providers that run the sessions' nodes, one line
    """

    def __init__(self, manifest: Manifest, cut: int, op: Operator, device: Device = "auto", threads: int = 0, *,
                 operator_on: str = "auto", iobinding: bool = True, cuda_graph: bool = False,
                 static_batch: bool | None = None):
        from .runtime import _ort

        self.ort = _ort()
        if op.n != manifest.n:
            raise GSError(f"operator has n = {op.n} but model {manifest.name} has n = {manifest.n}")
        if operator_on not in OPERATOR_PLACES:
            raise GSError(f"unknown operator place {operator_on!r}: choose one of {', '.join(OPERATOR_PLACES)}")
        self.spec = resolve_device(device)
        if cuda_graph and self.spec.name != "cuda":
            raise GSError("CUDA graphs need --device cuda")
        self.manifest, self.cut, self.op, self.threads = manifest, cut, op, threads
        self.device_name = self.spec.name
        place = default_operator_place(op, self.device_name) if operator_on == "auto" else operator_on
        form = op.onnx_form()
        if place == "graph" and form is None:
            raise GSError(f"{type(op).__name__} has no ONNX form: use operator_on='host'")
        self.operator_on, self.form = place, form
        self.iobinding, self.cuda_graph = bool(iobinding), bool(cuda_graph)
        if static_batch is None:  # measured: static shapes help on the CPU (VAE 0.8x), cost nothing elsewhere
            static_batch = self.spec.name == "cpu"
        self.static_batch = bool(static_batch or cuda_graph)
        self.tail = G.load_tail(manifest, cut)
        self.inputs, self.shapes, self.size = self.tail.inputs, self.tail.shapes, self.tail.size
        self.m, self.n = op.m, op.n
        self.image_shape = manifest.image_shape
        self._sessions: dict[Any, dict[str, Any]] = {}
        self._slots: dict[tuple, _Slot] = {}
        self._op_values: dict[str, Any] | None = None
        self._placements: list[dict[str, int]] = []
        self._session_set(1)  # build now: errors surface at construction
        self.provider = describe_placement(self._placements)

    # ------------------------------------------------------------------------------------------ sessions
    def _create(self, model) -> Any:
        opts = {"enable_cuda_graph": "1"} if self.cuda_graph else None
        s = create_session(model.SerializeToString(), self.spec.name, self.threads, provider_options=opts)
        self._placements.append(placement(s))
        return s

    def _session_set(self, batch: int | None) -> dict[str, Any]:
        """Sessions for one static batch size (CUDA graphs) or for every batch size (``None``)."""
        key = batch if self.static_batch else None
        if key not in self._sessions:
            if self.operator_on == "graph":
                obj, img = G.objective_models(self.tail, self.form, self.m, batch=key)
                self._sessions[key] = {"objective": self._create(obj), "image_model": img}
            else:
                fwd, vjp, reads = G.split_models(self.tail, batch=key)
                self._sessions[key] = {"forward": self._create(fwd), "vjp": self._create(vjp), "reads": reads}
                self._fwd_outputs = [o.name for o in fwd.graph.output]
                self._env_infos = {o.name: o for o in fwd.graph.output}
        return self._sessions[key]

    def _operator_values(self) -> dict[str, Any]:
        """The operator's run-time inputs (dense A) as OrtValues on the device, made once."""
        if self._op_values is None:
            self._op_values = {}
            for name, (shape, make) in self.form.inputs.items():
                a = np.ascontiguousarray(make(), dtype=np.float32)
                if a.shape != tuple(shape):
                    raise GSError(f"operator input {name} has shape {a.shape}, expected {tuple(shape)}")
                if self.spec.ort_device == "cpu":
                    self._op_values[name] = (self.ort.OrtValue.ortvalue_from_numpy(a), a)
                else:
                    self._op_values[name] = (self.ort.OrtValue.ortvalue_from_numpy(a, self.spec.ort_device, 0), None)
        return self._op_values

    def _slot(self, kind: str, B: int, specs) -> _Slot:
        key = (kind, B)
        if key not in self._slots:
            self._slots[key] = _Slot(self.ort, self.spec.ort_device, specs)
        return self._slots[key]

    # --------------------------------------------------------------------------------------- evaluation
    def evaluate(self, Z: np.ndarray, Y: np.ndarray, Wt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(f (B,) float64, grad (B, size) float32, f_held (B,) float64) for packed latents Z (B, size),
        measurements Y (B, m) and row weights Wt (B, m). The arrays returned are only valid until the next
        call (they may be the engine's own buffers)."""
        B = Z.shape[0]
        if self.operator_on == "graph":
            return self._evaluate_graph(Z, Y, Wt, B)
        return self._evaluate_host(Z, Y, Wt, B)

    def _graph_feed(self, Z, Y, Wt):
        feed = {G.Z: np.ascontiguousarray(Z, dtype=np.float32), G.Y: np.ascontiguousarray(Y, dtype=np.float32),
                G.W: np.ascontiguousarray(Wt, dtype=np.float32)}
        for name, (_, a) in self._operator_values().items():
            feed[name] = a
        return feed

    def _bind(self, sess, slot: _Slot, inputs: list[str], outputs: list[str]):
        b = sess.io_binding()
        for name in inputs:
            b.bind_ortvalue_input(name, slot.values[name])
        for name, (ov, _) in self._operator_values().items():
            b.bind_ortvalue_input(name, ov)
        for name in outputs:
            b.bind_ortvalue_output(name, slot.values[name])
        return b

    def _evaluate_graph(self, Z, Y, Wt, B):
        sess = self._session_set(B)["objective"]
        if not self.iobinding:
            f, g, fh = sess.run([G.F, G.GRAD, G.F_HELD], self._graph_feed(Z, Y, Wt))
            return f, g, fh
        slot = self._slot("objective", B, {G.Z: ((B, self.size), np.float32), G.Y: ((B, self.m), np.float32),
                                           G.W: ((B, self.m), np.float32), G.F: ((B,), np.float64),
                                           G.GRAD: ((B, self.size), np.float32), G.F_HELD: ((B,), np.float64)})
        if not hasattr(slot, "binding"):
            slot.binding = self._bind(sess, slot, [G.Z, G.Y, G.W], [G.F, G.GRAD, G.F_HELD])
        slot.put(G.Z, Z)
        slot.put(G.Y, Y, cache=True)
        slot.put(G.W, Wt, cache=True)
        if self.spec.name == "cuda":
            slot.binding.synchronize_inputs()
        sess.run_with_iobinding(slot.binding)
        if self.spec.name == "cuda":
            slot.binding.synchronize_outputs()
        return slot.get(G.F), slot.get(G.GRAD), slot.get(G.F_HELD)

    def _host_losses(self, x01: np.ndarray, Y, Wt):
        """f, f_held and dL/dx01 from the image on the host (the data term of gs_onnx.solve.objective)."""
        from ..physics.datafit import data_fit

        f, f_held, gx = data_fit(self.op, x01.reshape(x01.shape[0], -1), Y, Wt)
        return f, f_held, gx.reshape(x01.shape)

    def _evaluate_host(self, Z, Y, Wt, B):
        ss = self._session_set(B)
        fwd, vjp, reads = ss["forward"], ss["vjp"], ss["reads"]
        if not self.iobinding:
            outs = fwd.run(self._fwd_outputs, {G.Z: np.ascontiguousarray(Z, dtype=np.float32)})
            env = dict(zip(self._fwd_outputs, outs))
            f, f_held, gx = self._host_losses(env[G.X01], Y, Wt)
            feed = {n: env[n] for n in reads}
            feed[G.GRAD_X01] = np.ascontiguousarray(gx, dtype=np.float32)
            (g,) = vjp.run([G.GRAD], feed)
            return f, g, f_held
        slot = self._slots.get(("split", B))
        if slot is None:
            specs = {G.Z: ((B, self.size), np.float32), G.GRAD_X01: ((B, *self.image_shape), np.float32),
                     G.GRAD: ((B, self.size), np.float32)}
            for name in self._fwd_outputs:
                t = self._env_infos[name].type.tensor_type
                dims = [B] + [int(d.dim_value) for d in t.shape.dim[1:]]
                specs[name] = (tuple(dims), self.ort_numpy_type(t.elem_type))
            slot = self._slot("split", B, specs)
            slot.fwd_binding = fwd.io_binding()
            slot.fwd_binding.bind_ortvalue_input(G.Z, slot.values[G.Z])
            for name in self._fwd_outputs:
                slot.fwd_binding.bind_ortvalue_output(name, slot.values[name])
            slot.vjp_binding = vjp.io_binding()
            for name in reads:
                slot.vjp_binding.bind_ortvalue_input(name, slot.values[name])
            slot.vjp_binding.bind_ortvalue_input(G.GRAD_X01, slot.values[G.GRAD_X01])
            slot.vjp_binding.bind_ortvalue_output(G.GRAD, slot.values[G.GRAD])
        slot.put(G.Z, Z)
        fwd.run_with_iobinding(slot.fwd_binding)
        x01 = slot.get(G.X01)
        f, f_held, gx = self._host_losses(x01, Y, Wt)
        slot.put(G.GRAD_X01, gx)
        vjp.run_with_iobinding(slot.vjp_binding)
        return f, slot.get(G.GRAD), f_held

    @staticmethod
    def ort_numpy_type(elem: int):
        from onnx import helper

        return helper.tensor_dtype_to_np_dtype(elem)

    def images(self, Z: np.ndarray, Y: np.ndarray, Wt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x01 (B, C, H, W) unclamped, ||A clamp(x01) - y|| (B,), the same over held-out rows (B,))."""
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        if self.operator_on == "graph":
            ss = self._session_set(Z.shape[0])
            if "image" not in ss:
                ss["image"] = self._create(ss.pop("image_model"))
            sess = ss["image"]
            x01, err, err_held = sess.run([G.X01, G.ERR, G.ERR_HELD], self._graph_feed(Z, Y, Wt))
            return x01, err, err_held
        ss = self._session_set(Z.shape[0])
        (x01,) = ss["forward"].run([G.X01], {G.Z: Z})
        r = (self.op.forward(np.clip(x01, 0.0, 1.0).reshape(len(x01), -1)) - Y).astype(np.float64)
        hold = 1.0 - Wt.astype(np.float64)
        return x01, np.sqrt((r * r).sum(axis=1)), np.sqrt((r * r * hold).sum(axis=1))


class ComposedObjective:
    """The GS objective f(z) = ||A G_c(z) - y||^2 / m on an :class:`Engine`, for one image's measurements.

    Same interface as :class:`gs_onnx.solve.objective.Objective` (``layout``, ``evaluations``, ``value_and_grad``,
    ``value_and_grad_batch``, ``value``, ``image``, ``measurement_error``), so :func:`gs_onnx.solve.restart.recover`
    runs it; :meth:`with_measurements` gives the same sessions for another image.

    Parameters
    ----------
    engine : the sessions
    y : (m,) measurements
    w : (m,) row weights (default 1: every measurement fitted; 0 marks a held-out row)

    Attributes
    ----------
    eval_seconds : time spent inside the engine (so that the optimiser's own share can be told apart)
    """

    def __init__(self, engine: Engine, y: np.ndarray, w: np.ndarray | None = None):
        self.engine = engine
        self.y = np.asarray(y, dtype=np.float32).reshape(1, -1)
        self.m = self.y.shape[1]
        if self.m != engine.m:
            raise GSError(f"measurements have {self.m} values but the operator has m = {engine.m}")
        if not np.isfinite(self.y).all():
            raise GSError("measurements contain NaN or Inf")
        self.w = np.ones_like(self.y) if w is None else np.asarray(w, dtype=np.float32).reshape(1, -1)
        if self.w.shape != self.y.shape:
            raise GSError(f"row weights have {self.w.shape[1]} values for {self.m} measurements")
        self.layout = LatentLayout(engine.shapes)
        self.evaluations = 0
        self.eval_seconds = 0.0
        self.provider = engine.provider
        self.held_out = None  #: f_held of the last evaluation, (B,)

    def with_measurements(self, y: np.ndarray, w: np.ndarray | None = None) -> "ComposedObjective":
        return ComposedObjective(self.engine, y, w)

    def _rows(self, B: int, y: np.ndarray | None, w: np.ndarray | None):
        Y = np.broadcast_to(self.y, (B, self.m)) if y is None else np.asarray(y, dtype=np.float32).reshape(B, -1)
        Wt = np.broadcast_to(self.w, (B, self.m)) if w is None else np.asarray(w, dtype=np.float32).reshape(B, -1)
        return Y, Wt

    def value_and_grad_batch(self, Z: np.ndarray, y: np.ndarray | None = None,
                             w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """f (K,) and df/dz (K, size), float64, for K packed latents at once (rows: restarts and/or images,
        ``y`` (K, m) per row; default this objective's y for every row)."""
        Z = np.atleast_2d(Z)
        t = time.perf_counter()
        Y, Wt = self._rows(Z.shape[0], y, w)
        f, g, fh = self.engine.evaluate(Z, Y, Wt)
        self.held_out = np.array(fh, dtype=np.float64)
        out = np.array(f, dtype=np.float64), np.array(g, dtype=np.float64)
        self.eval_seconds += time.perf_counter() - t
        self.evaluations += Z.shape[0]
        return out

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self.value_and_grad_batch(np.asarray(z).reshape(1, -1))
        return float(f[0]), g[0]

    def value(self, z: np.ndarray) -> float:
        f, _ = self.value_and_grad_batch(np.asarray(z).reshape(1, -1))
        self.evaluations -= 1
        return float(f[0])

    def images(self, Z: np.ndarray, y: np.ndarray | None = None, w: np.ndarray | None = None):
        """(x01 unclamped (K, C, H, W), measurement error of the clamped image (K,), held-out error (K,))."""
        Z = np.atleast_2d(Z)
        Y, Wt = self._rows(Z.shape[0], y, w)
        return self.engine.images(Z, Y, Wt)

    def image(self, latents: dict[str, np.ndarray]) -> np.ndarray:
        """The cut generator's image in [0, 1] (unclamped), (B, C, H, W) float32."""
        return self.images(self.layout.pack(latents))[0]

    def measurement_error(self, latents: dict[str, np.ndarray]) -> float:
        """||A clamp(G(z), 0, 1) - y||_2 for one image: the restart-selection criterion."""
        return float(self.images(self.layout.pack(latents))[1][0])
