"""Export a generator as per-block forward and VJP ONNX graphs plus ``manifest.json``.

For block k the model folder gets ``block<k>.fwd.onnx`` (inputs -> outputs, then the values the backward
pass needs, ``saved<k>_<i>``), ``block<k>.vjp.onnx`` ((inputs, saved values, outputs it reads,
grad_<outputs>) -> grad_<inputs>, without recomputing the block) and ``block<k>.weights.bin``: the weights of both graphs as
ONNX external data, stored once and shared (a VJP weight that is the transpose of a forward weight, or a
forward kernel flipped with its channel axes swapped, is stored once and rearranged by nodes that ONNX
Runtime folds at session start). Every graph is checked
against torch autograd before the manifest is written; graphs with Scatter ops are refused.
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
import torch
from torch.export import Dim

from gs_onnx.generator.manifest import FORMAT, FORMAT_VERSION, load_manifest, sha256_file

from .architectures import Generator, fuse_batchnorm
from .vjp import partition, trace_joint

OPSET = 18
FORBIDDEN_OPS = ("Scatter", "ScatterND", "ScatterElements")
EXTERNAL_MIN_BYTES = 1024
TOLERANCE = 1e-4  # relative L2 error ||onnx - torch|| / ||torch|| accepted at export


def _export(fn, args: Sequence[torch.Tensor], input_names, output_names, path: Path) -> None:
    b = Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(fn, tuple(args), dynamo=True, input_names=list(input_names),
                                 output_names=list(output_names), opset_version=OPSET,
                                 dynamic_shapes=tuple({0: b} for _ in args), optimize=True, verbose=False)
    prog.save(str(path))


def _flip_kernel_nodes(src: str, out: str, inits: list) -> list:
    """Nodes computing ``out = src[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)`` for a 4-D kernel ``src``
    (appends the Slice constants to ``inits``); ONNX Runtime folds them once at session start."""
    consts = {"starts": [-1, -1], "ends": [-(2 ** 62), -(2 ** 62)], "axes": [2, 3], "steps": [-1, -1]}
    for k, v in consts.items():
        inits.append(numpy_helper.from_array(np.asarray(v, dtype=np.int64), name=f"{out}__{k}"))
    return [helper.make_node("Transpose", [src], [out + "__t"], perm=[1, 0, 2, 3]),
            helper.make_node("Slice", [out + "__t"] + [f"{out}__{k}" for k in consts], [out])]


def _share_weights(fwd_path: Path, vjp_path: Path, bin_name: str) -> dict:
    """Move the large initializers of both graphs into one external-data file, each tensor stored once."""
    fwd = onnx.load(str(fwd_path), load_external_data=True)
    vjp = onnx.load(str(vjp_path), load_external_data=True)
    blob = bytearray()
    by_hash: dict[str, tuple[int, int]] = {}
    fwd_arrays: dict[str, np.ndarray] = {}
    stats = {"stored": 0, "shared": 0, "transposed": 0, "flipped": 0}

    def put(t: onnx.TensorProto) -> None:
        raw = numpy_helper.to_array(t).tobytes()
        key = hashlib.sha256(raw + str(t.data_type).encode()).hexdigest()
        if key in by_hash:
            off, ln = by_hash[key]
            stats["shared"] += 1
        else:
            while len(blob) % 64:
                blob.append(0)
            off, ln = len(blob), len(raw)
            blob.extend(raw)
            by_hash[key] = (off, ln)
            stats["stored"] += 1
        arr_dims = list(t.dims)
        t.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data"):
            t.ClearField(f)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", bin_name), ("offset", str(off)), ("length", str(ln))):
            e = t.external_data.add()
            e.key, e.value = k, v
        del t.dims[:]
        t.dims.extend(arr_dims)

    for t in fwd.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.nbytes >= EXTERNAL_MIN_BYTES:
            fwd_arrays[t.name] = a
            put(t)
    # VJP weights that are a rearranged forward weight: a transposed matrix (Linear), or a kernel with
    # swapped channel axes and flipped spatial axes (a stride-1 convolution's input gradient, where the
    # exporter folded the flip into a constant)
    derived: dict[str, tuple[str, str]] = {}
    for n, a in fwd_arrays.items():
        if a.ndim == 2:
            derived.setdefault(hashlib.sha256(np.ascontiguousarray(a.T).tobytes()).hexdigest(), (n, "transpose"))
        elif a.ndim == 4:
            flipped = np.ascontiguousarray(a[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            derived.setdefault(hashlib.sha256(flipped.tobytes()).hexdigest(), (n, "flip"))
    new_inits, new_nodes = [], []
    for t in vjp.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.nbytes < EXTERNAL_MIN_BYTES:
            new_inits.append(t)
            continue
        src = derived.get(hashlib.sha256(a.tobytes()).hexdigest()) if a.ndim in (2, 4) else None
        exact = hashlib.sha256(a.tobytes() + str(t.data_type).encode()).hexdigest() in by_hash
        if src is not None and not exact and fwd_arrays[src[0]].ndim == a.ndim:
            base = numpy_helper.from_array(fwd_arrays[src[0]], name=t.name + "__src")
            put(base)
            new_inits.append(base)
            if src[1] == "transpose":
                new_nodes.append(helper.make_node("Transpose", [base.name], [t.name], perm=[1, 0]))
                stats["transposed"] += 1
            else:
                new_nodes += _flip_kernel_nodes(base.name, t.name, new_inits)
                stats["flipped"] += 1
        else:
            put(t)
            new_inits.append(t)
    del vjp.graph.initializer[:]
    vjp.graph.initializer.extend(new_inits)
    nodes = list(vjp.graph.node)
    del vjp.graph.node[:]
    vjp.graph.node.extend(new_nodes + nodes)
    (fwd_path.parent / bin_name).write_bytes(bytes(blob))
    for m, p in ((fwd, fwd_path), (vjp, vjp_path)):
        onnx.save_model(m, str(p), save_as_external_data=False)
        onnx.checker.check_model(str(p))
    for extra in fwd_path.parent.glob("*.onnx.data"):
        extra.unlink()
    stats["bytes"] = len(blob)
    return stats


def _parameter_map(block: torch.nn.Module, fwd_path: Path, vjp_path: Path) -> dict:
    """Where each of the block's parameters lives in its graphs: {parameter name: {"graph": "forward" |
    "vjp", "initializer": name, "transpose": bool}}, found by value (the exporter may rename or fold them).
    Lets torch code (IAGAN, the torch reference) rebuild the block from the exported model alone."""
    inits: list[tuple[str, str, np.ndarray]] = []
    for graph, path in (("forward", fwd_path), ("vjp", vjp_path)):
        m = onnx.load(str(path), load_external_data=False)
        onnx.load_external_data_for_model(m, str(path.parent))
        inits += [(graph, t.name, numpy_helper.to_array(t)) for t in m.graph.initializer]
    out = {}
    for name, p in block.named_parameters():
        a = p.detach().cpu().numpy()
        for graph, iname, v in inits:
            if v.shape == a.shape and np.array_equal(v, a):
                out[name] = {"graph": graph, "initializer": iname, "transpose": False}
                break
            if a.ndim == 2 and v.shape == a.T.shape and np.array_equal(v, a.T):
                out[name] = {"graph": graph, "initializer": iname, "transpose": True}
                break
        else:
            if not a.any():  # an all-zero bias the graph optimiser removed with its Add
                out[name] = {"zeros": True}
                continue
            raise RuntimeError(f"parameter {name} is in neither graph as stored or transposed")
    return out


def _check_graph_ops(path: Path) -> list[str]:
    m = onnx.load(str(path), load_external_data=False)
    ops = sorted({n.op_type for n in m.graph.node})
    bad = [o for o in ops if o in FORBIDDEN_OPS]
    if bad:
        raise RuntimeError(f"{path.name} contains {bad}: refused (ONNX Runtime's CPU ScatterND with "
                           "reduction races on duplicate indices)")
    return ops


def check_block(block: torch.nn.Module, shapes: dict, fwd_path: Path, vjp_path: Path,
                batches: Sequence[int] = (1, 3), repeats: int = 3, seed: int = 0) -> dict:
    """Compare a block's ONNX forward and VJP against torch (autograd) on random inputs.

    Returns the largest relative L2 and max-abs errors over ``batches`` x ``repeats`` (see :func:`_err`).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    fs = ort.InferenceSession(str(fwd_path), so, providers=["CPUExecutionProvider"])
    vs = ort.InferenceSession(str(vjp_path), so, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    ef = ev = mf = mv = 0.0
    for b in batches:
        for _ in range(repeats):
            xs = [torch.randn((b, *shapes[n]), generator=gen).requires_grad_(True) for n in block.inputs]
            out = block(*xs)
            out = out if isinstance(out, tuple) else (out,)
            # Cotangents are zeroed where an output lies within 1e-3 std of zero: there a ReLU/LeakyReLU
            # pre-activation sits at its kink up to rounding, ONNX Runtime and torch may take different
            # branches, and a single such element moves the VJP of a small block by ~0.3% (seen on the
            # DigiFace DCGAN). Elsewhere the comparison is exact to float32 rounding.
            gs = [torch.randn(o.shape, generator=gen) * (o.detach().abs() >= 1e-3 * o.detach().std())
                  for o in out]
            ref = torch.autograd.grad(out, xs, gs, allow_unused=True)
            feed = {n: x.detach().numpy() for n, x in zip(block.inputs, xs)}
            got = fs.run(None, feed)
            for o, r in zip(got, out):
                ef, mf = _err(o, r.detach().numpy(), ef, mf)
            # the VJP graph reads the forward graph's outputs (block outputs and saved values) by name
            env = {**feed, **{i.name: v for i, v in zip(fs.get_outputs(), got)},
                   **{f"grad_{n}": g.numpy() for n, g in zip(block.outputs, gs)}}
            got = vs.run(None, {i.name: env[i.name] for i in vs.get_inputs()})
            for o, r, x in zip(got, ref, xs):
                r = torch.zeros_like(x) if r is None else r
                ev, mv = _err(o, r.detach().numpy(), ev, mv)
    return {"forward_rel_l2_err": ef, "vjp_rel_l2_err": ev, "forward_max_rel_err": mf, "vjp_max_rel_err": mv,
            "batches": list(batches), "repeats": repeats, "tolerance_rel_l2": TOLERANCE}


def _err(got: np.ndarray, ref: np.ndarray, l2: float, mx: float) -> tuple[float, float]:
    """Running maxima of the relative L2 error ||got - ref|| / ||ref|| and of max|got - ref| / max|ref|.

    The acceptance test uses the L2 error: a pre-activation within rounding of a ReLU kink may take the
    other branch in ONNX Runtime than in torch, which moves the max error of a VJP by a few percent at
    one element while the L2 error stays at float32 level.
    """
    d = (got.astype(np.float64) - ref.astype(np.float64))
    nr = max(float(np.linalg.norm(ref)), 1e-30)
    return (max(l2, float(np.linalg.norm(d)) / nr),
            max(mx, float(np.abs(d).max()) / max(float(np.abs(ref).max()), 1e-30)))


def export_generator(gen: Generator, out_dir: str | Path, name: str, *, provenance: dict,
                     recommended: dict | None = None, untrained: bool = False, check_repeats: int = 3,
                     progress=None) -> Path:
    """Write ``out_dir`` (replacing it atomically) with the per-block graphs and the manifest.

    Parameters
    ----------
    gen : an architecture from :mod:`gs_export.architectures` with its weights loaded; put in eval mode.
    name : model name recorded in the manifest.
    provenance : weights source, training data, licence, ... (free-form JSON object).
    recommended : {"cut": c, "optimizer": {...}}; defaults per architecture.
    """
    out_dir = Path(out_dir)
    gen = gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    shapes = gen.shapes()
    fused = fuse_batchnorm(copy.deepcopy(gen)).eval()
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # the temp folder sits beside it: one filesystem
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir.parent))
    try:
        blocks = []
        files: dict[str, str] = {}
        for k, (blk, orig) in enumerate(zip(fused.blocks, gen.blocks)):
            if progress:
                progress(k, gen.depth)
            xs = [torch.randn((2, *shapes[n])) for n in blk.inputs]
            fwd, vjp, wts = f"block{k}.fwd.onnx", f"block{k}.vjp.onnx", f"block{k}.weights.bin"
            # forward and VJP come from one traced joint graph, split where the backward pass needs
            # forward values: the forward graph also returns them ("saved"), the VJP graph reads them
            # instead of recomputing the block
            gm, n_out = trace_joint(blk, xs)
            fwd_gm, bwd_gm, n_saved, used_outs = partition(gm, len(xs), n_out)
            saved = [f"saved{k}_{i}" for i in range(n_saved)]
            fout = list(blk.outputs) + saved
            _export(fwd_gm, xs, blk.inputs, fout, tmp / fwd)
            with torch.no_grad():
                fvals = dict(zip(fout, fwd_gm(*xs)))
            vin = list(blk.inputs) + saved + [blk.outputs[i] for i in used_outs] + [f"grad_{n}" for n in blk.outputs]
            vout = [f"grad_{n}" for n in blk.inputs]
            cot = [torch.randn_like(fvals[n]) for n in blk.outputs]
            vargs = xs + [fvals[n] for n in saved] + [fvals[blk.outputs[i]] for i in used_outs] + cot
            _export(bwd_gm, vargs, vin, vout, tmp / vjp)
            ops = {"forward": _check_graph_ops(tmp / fwd), "vjp": _check_graph_ops(tmp / vjp)}
            share = _share_weights(tmp / fwd, tmp / vjp, wts)
            params = _parameter_map(blk, tmp / fwd, tmp / vjp)
            chk = check_block(orig, shapes, tmp / fwd, tmp / vjp, repeats=check_repeats, seed=k)
            if max(chk["forward_rel_l2_err"], chk["vjp_rel_l2_err"]) > TOLERANCE:
                raise RuntimeError(f"block {k}: ONNX disagrees with torch: {chk}")
            chk["ops"] = ops
            chk["weights"] = share
            blocks.append({"index": k, "inputs": list(blk.inputs), "outputs": list(blk.outputs),
                           "saved": saved, "parameters": params,
                           "forward": {"file": fwd, "inputs": list(blk.inputs), "outputs": fout},
                           "vjp": {"file": vjp, "inputs": vin, "outputs": vout},
                           "weights": wts, "check": chk})
        cuts = [{"cut": c, "inputs": gen.cut_inputs(c),
                 "size": int(sum(np.prod(shapes[n]) for n in gen.cut_inputs(c)))} for c in range(gen.depth)]
        rec = recommended or default_recommended(gen.arch, gen.depth)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
            "architecture": {"name": gen.arch, "config": gen.config()},
            "tensors": {k: list(v) for k, v in shapes.items()},
            "latent": {"name": "z", "prior": gen.latent_prior, "prior_note": PRIOR_NOTES[gen.latent_prior]},
            "image": {"name": "x", "layout": "CHW", "channels": shapes["x"][0], "height": shapes["x"][1],
                      "width": shapes["x"][2]},
            "output_range": list(gen.output_range),
            "blocks": blocks, "cuts": cuts, "recommended": rec, "opset": OPSET,
            "batch_axis": "dynamic (axis 0 of every graph input and output)",
            "untrained": untrained, "provenance": provenance,
            "exported": {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
                         "onnx": onnx.__version__,
                         "parameters": int(sum(p.numel() for p in gen.parameters()))},
        }
        for f in sorted(tmp.iterdir()):
            files[f.name] = sha256_file(f)
        manifest["files"] = files
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        load_manifest(tmp)  # the runtime's own validation
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        os.chmod(out_dir, 0o755)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


#: The human-readable note of each latent prior a manifest may declare (gs_onnx.generator.manifest.LATENT_PRIORS).
PRIOR_NOTES = {"normal": "N(0, 1)", "uniform": "U(-1, 1)", "clipped_normal": "N(0, 1) clipped to [-1, 1]"}


def default_recommended(arch: str, depth: int | None = None, cut: int | None = None) -> dict:
    """The recommended cut (``cut``, else the paper's for the architecture, kept inside a model of ``depth``
    blocks) and our L-BFGS-B budget."""
    if cut is None:
        cut = {"dcgan": 1, "began": 2, "vae": 1}.get(arch, 1)
        if depth is not None and cut >= depth - 1:
            cut = max(0, min(1, depth - 1))
    elif depth is not None and not 0 <= cut < depth:
        raise ValueError(f"--recommended-cut {cut} is not a cut of this model (0..{depth - 1})")
    return {"cut": cut, "optimizer": {"method": "L-BFGS-B", "max_iter": 500, "max_fun": 625,
                                      "history": 100, "restarts": 3, "init": "cn01"},
            "note": "paper: torch L-BFGS, 25 outer steps x up to 20 inner iterations (<= 500 iterations)"}
