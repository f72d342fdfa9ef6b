"""The reader's rules for a recovery folder (docs/recovery-graph.md, section 12), one function per rule group, each
refusal naming its rule: what every client (this one, examples/node, the browser page) checks before a session runs.

:func:`check_before_reading` runs rules 3 and 4 before any file is read, :func:`check_after_reading` rules 6, 7 and
8 on the verified files (rules 1, 2 and 5: :func:`gs_onnx.io.recovery_folder.read_folder`). The conformance kit
(``examples/conformance``) holds folders that break each rule.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import GSError

#: The IR versions and the default-domain opsets a reader accepts (what gs-export recovery writes: IR 10, opset 18).
IR_VERSIONS = range(7, 11)
OPSETS = range(13, 19)
#: Counts a folder may ask for (iterations, patience, polish): beyond them a run is refused, not started.
MAX_COUNT = 1_000_000
HEX64 = re.compile(r"^[0-9a-f]{64}$")
METHODS = ("gs", "gs-pnp", "gs-tv")


def _fail(rule: int, folder: Path, what: str) -> GSError:
    return GSError(f"{Path(folder) / 'recovery.json'}: {what} (rule {rule})")


def _int(v, lo: int = 0, hi: int = MAX_COUNT) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_fields(folder: Path, iface: dict) -> None:
    """Rule 3: the interface's own fields have their types and ranges."""
    def need(cond, what):
        if not cond:
            raise _fail(3, folder, what)

    need(isinstance(iface.get("model"), str) and iface["model"], "model must be a non-empty string")
    need(isinstance(iface.get("model_sha256"), str) and HEX64.match(iface["model_sha256"]),
         "model_sha256 must be 64 lowercase hex digits")
    need(_int(iface.get("cut")), "cut must be an integer >= 0")
    need(_int(iface.get("image")), "image must be an integer >= 0")
    shape = iface.get("image_shape")
    need(isinstance(shape, list) and len(shape) == 3 and all(_int(v, 1, 1 << 16) for v in shape),
         "image_shape must be three integers >= 1")
    need(isinstance(iface.get("operator"), dict) and isinstance(iface["operator"].get("type"), str),
         "operator must be an object with a type")
    need(_int(iface.get("m"), 1, 1 << 40), "m must be an integer >= 1")
    need(_int(iface.get("n"), 1, 1 << 40) and iface["n"] == shape[0] * shape[1] * shape[2],
         f"n must be C * H * W of image_shape ({shape[0] * shape[1] * shape[2]})")
    need(iface.get("method", "gs") in METHODS, f"method must be one of {', '.join(METHODS)}")
    plan = iface.get("plan")
    need(isinstance(plan, dict) and _int(plan.get("restarts"), 1, 1000) and _int(plan.get("max_iter"), 1)
         and isinstance(plan.get("stopping"), dict), "plan must give restarts, max_iter and stopping")
    need(isinstance(iface.get("outputs"), dict) and "image" in iface["outputs"], "outputs must name image")
    need(iface.get("reference") in (None, "reference.npy"), "reference must be reference.npy")
    if iface.get("method") == "gs-pnp":
        need(isinstance(plan.get("pnp"), dict) and isinstance(plan["pnp"].get("candidates"), list),
             "a gs-pnp folder's plan must give pnp.candidates")
    if iface.get("method") == "gs-tv":
        need(isinstance(plan.get("tv"), dict), "a gs-tv folder's plan must give tv")
    check_described_fields(folder, iface)


def check_described_fields(folder: Path, iface: dict) -> None:
    """Rule 3, the fields a reader reports or acts on besides the plan: where present, ``sigma`` a finite number
    >= 0 (or null), ``source`` an object whose ``sha256`` is 64 lowercase hex digits and ``path`` a string,
    ``measurements`` a string, ``resume`` the names section 8 gives (``state`` mapping inputs to outputs)."""
    def need(cond, what):
        if not cond:
            raise _fail(3, folder, what)

    if iface.get("sigma") is not None:
        s = iface["sigma"]
        need(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0,
             "sigma must be a finite number >= 0 (the measurements' noise per value), or null")
    if "source" in iface:
        src = iface["source"]
        need(isinstance(src, dict), "source must be an object (path, sha256)")
        need("sha256" not in src or (isinstance(src["sha256"], str) and HEX64.match(src["sha256"])),
             "source.sha256 must be 64 lowercase hex digits")
        need(isinstance(src.get("path", ""), str), "source.path must be a string")
    need(isinstance(iface.get("measurements", ""), str), "measurements must be a string (the file's name)")
    if "resume" in iface:
        r = iface["resume"]
        need(isinstance(r, dict) and r.get("start") == "start" and r.get("chunk") == "chunk"
             and r.get("running") == "running" and isinstance(r.get("state"), dict),
             "resume must name start, chunk, running and state (section 8)")
        for k, v in r["state"].items():
            need(k in iface["inputs"] and isinstance(v, str) and v in iface["outputs"],
                 f"resume.state must map inputs to outputs ({str(k)[:40]!r})")
        need("start" in iface["inputs"] and "chunk" in iface["inputs"] and "running" in iface["outputs"],
             "resume names start, chunk and running, which the interface must declare")


def check_files(folder: Path, iface: dict) -> None:
    """Rule 4: ``files`` lists exactly the graph, one ``inputs/NAME.npy`` per input, and reference.npy when the
    folder has a reference, each with a sha256; nothing a reader would not read."""
    files, inputs = iface["files"], iface["inputs"]
    want = {"recovery.onnx"} | {f"inputs/{n}.npy" for n in inputs} | ({"reference.npy"} if iface.get("reference")
                                                                       else set())
    for rel in sorted(set(files) - want):
        raise _fail(4, folder, f"files lists {rel!r}, which no input, graph or reference reads")
    for rel in sorted(want - set(files)):
        raise _fail(4, folder, f"files lists no sha256 for {rel!r}")
    for rel, digest in files.items():
        if not (isinstance(digest, str) and HEX64.match(digest)):
            raise _fail(4, folder, f"the sha256 of {rel!r} is not 64 lowercase hex digits")


def check_graph(folder: Path, graph: bytes, iface: dict) -> None:
    """Rule 6: the graph is an ONNX model of a supported IR version and default-domain opset, with no external
    data anywhere (its initializers, its attribute tensors, its subgraphs): nothing it runs is read from a path;
    its inputs are the interface's."""
    import onnx

    try:
        model = onnx.ModelProto.FromString(graph)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise _fail(6, folder, "recovery.onnx is not an ONNX model") from None
    if model.ir_version not in IR_VERSIONS:
        raise _fail(6, folder, f"recovery.onnx has IR version {model.ir_version}; readers accept "
                               f"{IR_VERSIONS.start}..{IR_VERSIONS.stop - 1}")
    for op in model.opset_import:
        if op.domain not in ("", "ai.onnx"):
            raise _fail(6, folder, f"recovery.onnx imports the operator domain {op.domain!r}; readers accept only "
                                   "the default domain")
        if op.version not in OPSETS:
            raise _fail(6, folder, f"recovery.onnx uses opset {op.version}; readers accept {OPSETS.start}.."
                                   f"{OPSETS.stop - 1}")

    def tensors(g):
        yield from g.initializer
        for node in g.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    yield a.t
                elif a.type == onnx.AttributeProto.GRAPH:
                    yield from tensors(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        yield from tensors(sub)

    for t in tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise _fail(6, folder, f"recovery.onnx keeps tensor {t.name!r} in external data: a recovery graph "
                                   "carries its weights inside")
    if len(model.functions):
        raise _fail(6, folder, "recovery.onnx defines model-local functions; readers accept none")
    declared = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if sorted(declared) != sorted(iface["inputs"]):
        extra = sorted(set(iface["inputs"]) - set(declared)) or sorted(set(declared) - set(iface["inputs"]))
        raise _fail(6, folder, f"the graph's inputs and the interface's differ ({extra[0]!r})")


def check_consistency(folder: Path, inputs: dict[str, np.ndarray], iface: dict) -> None:
    """Rule 7: the interface agrees with itself and its own files: the operator's own m, n and in_shape are the
    interface's, y and w are (1, m), w holds 0 and 1 with at least one 1, a dense A is (m, n) and comes with a
    gaussian operator (and only then), z0 has plan.restarts rows, the skip prior has z0's width. (Which ``op_*``
    tables, and their values, the operator's type feeds: the operator rebuilt,
    :func:`gs_onnx.physics.sidecar.operator_for_tables`.)"""
    m, n = iface["m"], iface["n"]

    def need(cond, what):
        if not cond:
            raise _fail(7, folder, what)

    op = iface["operator"]
    for key in ("m", "n"):
        need(op.get(key, iface[key]) == iface[key], f"operator.{key} ({op.get(key)!r}) must be the interface's "
                                                   f"{key} ({iface[key]})")
    need(op.get("in_shape", iface["image_shape"]) == iface["image_shape"],
         "operator.in_shape must be image_shape")
    for name in ("y", "w"):
        need(name in inputs and inputs[name].shape == (1, m), f"{name} must be (1, m) = (1, {m})")
    w = inputs["w"]
    need(bool(np.all((w == 0) | (w == 1))) and bool((w == 1).any()), "w must hold 0 and 1, with at least one 1")
    kind = iface["operator"]["type"]
    if "A" in inputs:
        need(inputs["A"].shape == (m, n), f"A must be (m, n) = ({m}, {n})")
    need(("A" in inputs) == (kind == "gaussian"), f"a {kind} operator {'needs' if kind == 'gaussian' else 'has no'} "
                                                 "dense A")
    z0 = inputs.get("z0")
    need(z0 is not None and z0.ndim == 2 and z0.shape[0] == iface["plan"]["restarts"],
         f"z0 must have plan.restarts = {iface['plan']['restarts']} rows")
    for name in ("prior_mean", "prior_scale"):
        need(name in inputs and inputs[name].shape == (z0.shape[1],), f"{name} must be ({z0.shape[1]},), z0's width")
    out = iface["outputs"]["image"].get("shape") if isinstance(iface["outputs"].get("image"), dict) else None
    need(isinstance(out, list) and len(out) == 3 and all(d == v for d, v in zip(out, iface["image_shape"])
                                                          if isinstance(d, int)),
         "the output image's shape must be image_shape (or C, H, W)")


def budget(inputs: dict[str, np.ndarray]) -> int:
    """The iterations the folder's plan allows a restart (L-BFGS: steps x step_iters; Adam: max_iterations)."""
    if "steps" in inputs:
        return int(inputs["steps"]) * int(inputs["step_iters"])
    return int(inputs["max_iterations"])


def check_values(folder: Path, inputs: dict[str, np.ndarray], iface: dict) -> None:
    """Rule 8: the numbers are in range: rates and tolerances finite (rates > 0), counts integers in 1..10^6 (the
    patience 0..10^6), chunk within the plan's budget, the PnP stage's levels in (0, 1] and steps > 0."""
    def scalar(name):
        a = inputs[name]
        return a.item() if a.shape == () else None

    def need(cond, what):
        if not cond:
            raise _fail(8, folder, what)

    for name in ("lr", "eps"):
        if name in inputs:
            v = scalar(name)
            need(v is not None and math.isfinite(v) and v > 0, f"{name} must be one finite number > 0")
    for name in ("tolerance_grad", "tolerance_change"):
        if name in inputs:
            v = scalar(name)
            need(v is not None and math.isfinite(v) and v >= 0, f"{name} must be one finite number >= 0")
    for name in ("beta1", "beta2"):
        if name in inputs:
            v = scalar(name)
            need(v is not None and 0 <= v < 1, f"{name} must be in [0, 1)")
    for name in ("steps", "step_iters", "max_iterations"):
        if name in inputs:
            need(_int(int(scalar(name)) if scalar(name) is not None else None, 1), f"{name} must be in 1..{MAX_COUNT}")
    for name in ("patience", "pnp_patience", "pnp_polish"):
        if name in inputs:
            v = scalar(name)
            need(v is not None and 0 <= v <= MAX_COUNT, f"{name} must be in 0..{MAX_COUNT}")
    need(("steps" in inputs) != ("max_iterations" in inputs), "the folder must give steps (L-BFGS) or "
                                                              "max_iterations (Adam), not both")
    total = budget(inputs)
    need(total <= MAX_COUNT, f"the plan's budget {total} is above {MAX_COUNT} iterations")
    if "chunk" in inputs:
        need(int(inputs["chunk"]) <= total, f"chunk {int(inputs['chunk'])} is above the plan's budget of {total}")
    if "pnp_sigma" in inputs:
        s, it = inputs["pnp_sigma"], inputs["pnp_iterations"]
        R = len(it)
        need(s.ndim == 2 and s.shape[0] == R and np.all(s > 0) and np.all(s <= 1), "pnp_sigma must be (R, T) in (0, 1]")
        need(bool(np.all(it >= 1)) and bool(np.all(it <= s.shape[1])), "pnp_iterations must be in 1..T")
        for name in ("pnp_gamma", "pnp_tau", "pnp_from_grey"):
            need(inputs[name].shape == (R,), f"{name} must have one value per candidate row ({R})")
        need(bool(np.all(inputs["pnp_gamma"] >= 0)) and bool(np.all(inputs["pnp_tau"] > 0)),
             "pnp_gamma must be >= 0 and pnp_tau > 0")
        cands = (iface["plan"].get("pnp") or {}).get("candidates") or []
        need(len(cands) == R, f"plan.pnp.candidates must name the {R} candidate rows")
        if "pnp_denoiser" in inputs:
            K = len((iface["plan"].get("pnp") or {}).get("classical") or {})
            d = inputs["pnp_denoiser"]
            need(d.shape == (R,) and bool(np.all(d >= 0)) and bool(np.all(d <= K)),
                 f"pnp_denoiser must give each candidate row 0 (the network) or 1..{K} (plan.pnp.classical)")
    for name, lo in (("tv_lam", 0.0), ("tv_gamma", 0.0), ("tv_tol", 0.0), ("tv_lipschitz", None)):
        if name in inputs:
            v = scalar(name)
            ok = v is not None and math.isfinite(v) and (v > 0 if lo is None else v >= lo)
            need(ok, f"{name} must be one finite number {'> 0' if lo is None else '>= 0'}")
    if "tv_max_iter" in inputs:
        v = scalar("tv_max_iter")
        need(v is not None and 1 <= v <= MAX_COUNT, f"tv_max_iter must be in 1..{MAX_COUNT}")


def _malformed(folder: Path, rule: int, e: Exception) -> GSError:
    return GSError(f"{Path(folder) / 'recovery.json'}: malformed ({type(e).__name__}: {e}) (rule {rule})".splitlines()[0])


def check_before_reading(folder: Path, iface: dict) -> None:
    """Rules 3 and 4, before any file is read: the fields, and the files the interface lists."""
    try:
        check_fields(folder, iface)
        check_files(folder, iface)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:  # a field of a kind no rule named
        raise _malformed(folder, 3, e) from None


def check_after_reading(folder: Path, graph: bytes, inputs: dict[str, np.ndarray], iface: dict) -> None:
    """Rules 6, 7 and 8 (docs/recovery-graph.md, section 12) on the verified files; GSError naming the rule."""
    try:
        check_graph(folder, graph, iface)
        check_consistency(folder, inputs, iface)
        check_values(folder, inputs, iface)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        raise _malformed(folder, 7, e) from None
