"""The cut manifest: how a model's per-block ONNX graphs chain and what a cut leaves to optimise.

``models/<name>/manifest.json`` is the single entry point to an exported model; ``docs/manifest.md``
documents every field for consumers in other languages. :func:`load_manifest` reads it, checks the
schema, confines every path to the model folder and verifies the sha256 of every file it names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ..errors import GSError
from ..io import strictjson
from ..io.paths import confined, regular_file

FORMAT = "gs-onnx-manifest"
FORMAT_VERSION = 1
#: Latent priors a manifest may declare (latent.prior); docs/manifest.md gives their meaning.
LATENT_PRIORS = ("normal", "uniform", "clipped_normal")


@dataclasses.dataclass(frozen=True)
class Graph:
    """One ONNX graph file. ``inputs``/``outputs`` are the graph's tensor names, in order."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """Block ``index``: reads tensors ``inputs``, writes ``outputs`` (names from ``Manifest.tensors``).

    ``forward`` maps inputs -> outputs. ``vjp`` maps (inputs..., grad_<output>...) -> (grad_<input>...):
    the vector-Jacobian product of the block, input gradients only.
    """

    index: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    forward: Graph
    vjp: Graph
    check: dict


@dataclasses.dataclass(frozen=True)
class CutSpec:
    """Cut ``c``: the optimisable tensors (inputs of blocks c.. produced before c), in order."""

    cut: int
    inputs: tuple[str, ...]

    def size(self, tensors: dict[str, tuple[int, ...]]) -> int:
        """Number of free values per image."""
        total = 0
        for n in self.inputs:
            k = 1
            for d in tensors[n]:
                k *= d
            total += k
        return total


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A loaded, verified manifest. ``root`` is the model folder; ``tensors`` maps every named tensor to
    its per-sample shape (batch axis excluded). ``image`` is the tensor name of the generator's output."""

    root: Path
    name: str
    architecture: str
    config: dict
    tensors: dict[str, tuple[int, ...]]
    latent: str
    latent_prior: str
    image: str
    output_range: tuple[float, float]
    blocks: tuple[BlockSpec, ...]
    cuts: tuple[CutSpec, ...]
    recommended: dict
    opset: int
    provenance: dict
    untrained: bool
    raw: dict

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the generator's output."""
        c, h, w = self.tensors[self.image]
        return int(c), int(h), int(w)

    @property
    def n(self) -> int:
        """Number of pixel values per image, C*H*W."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def recommended_cut(self) -> int:
        return int(self.recommended.get("cut", 0))

    def cut(self, c: int) -> CutSpec:
        """The spec of cut ``c`` (a Python or numpy integer); GSError when out of range."""
        import numbers

        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise GSError(f"cut must be an integer, got {c!r}")
        c = int(c)
        if not 0 <= c < self.depth:
            raise GSError(f"cut {c} out of range for model {self.name}: valid cuts are 0..{self.depth - 1}")
        return self.cuts[c]

    def to_unit(self) -> tuple[float, float]:
        """(scale, shift) with x01 = scale * x + shift mapping ``output_range`` onto [0, 1]."""
        lo, hi = self.output_range
        return 1.0 / (hi - lo), -lo / (hi - lo)

    def path(self, rel: str) -> Path:
        return safe_path(self.root, rel)

    @property
    def lattice_cell(self) -> int | None:
        """The period in output pixels of the lattice a skip source can draw, or None.

        A skip source is a tensor read by more than one block (BEGAN's ``h1``, 8 x 8, nearest-upsampled into
        every later block): where it leaves the values the generator was trained on, its cells show as lines
        every ``image height / source height`` pixels (16 for the 128 px BEGAN). :func:`gs_onnx.metrics.seam`
        measures them at this period."""
        readers: dict[str, int] = {}
        for b in self.blocks:
            for name in b.inputs:
                readers[name] = readers.get(name, 0) + 1
        cells = [self.image_shape[1] // self.tensors[name][1] for name, k in readers.items()
                 if k > 1 and len(self.tensors.get(name, ())) == 3 and self.tensors[name][1] < self.image_shape[1]]
        return max(cells) if cells else None


def model_digest(man) -> str:
    """The sha256 of a model's manifest (which lists the sha256 of every file of the model): two models of one
    name with different weights have different digests."""
    return hashlib.sha256((Path(man.root) / "manifest.json").read_bytes()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_path(root: Path, rel: str) -> Path:
    """``root / rel`` for a path a manifest names, refusing absolute paths and anything that resolves outside
    the model folder (:func:`gs_onnx.io.paths.confined`)."""
    return confined(root, rel, "manifest path", "the model folder")


def _req(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise GSError(f"invalid manifest: missing {where}{key}")
    return d[key]


def _graph(d: dict, where: str) -> Graph:
    return Graph(file=_req(d, "file", where), inputs=tuple(_req(d, "inputs", where)),
                 outputs=tuple(_req(d, "outputs", where)))


def _check_block_graphs(b: BlockSpec) -> None:
    """The forward graph maps the block's inputs to its outputs, then any saved values; the VJP graph reads
    only block inputs, forward-graph outputs and grad_<output>, and returns grad_<input>."""
    f, v = b.forward, b.vjp
    if f.inputs != b.inputs or f.outputs[: len(b.outputs)] != b.outputs:
        raise GSError(f"invalid manifest: block {b.index} forward graph does not map its inputs to its outputs")
    known = set(b.inputs) | set(f.outputs) | {f"grad_{n}" for n in b.outputs}
    bad = [n for n in v.inputs if n not in known]
    if bad:
        raise GSError(f"invalid manifest: block {b.index} VJP graph reads unknown tensor {bad[0]!r}")
    if v.outputs != tuple(f"grad_{n}" for n in b.inputs):
        raise GSError(f"invalid manifest: block {b.index} VJP graph must return grad_ of each block input")


#: Largest manifest.json read (a real one is ~20 kB).
MAX_MANIFEST_BYTES = 4 << 20
#: The largest model file (a block's graph or weights) read: ONNX protobufs are limited to 2 GiB, and external
#: weights of one block beyond 4 GiB are not a generator this runtime can optimise through.
MAX_MODEL_FILE_BYTES = 4 << 30
#: Upper bounds of the recommended optimiser counts (scipy keeps ``history`` pairs of latent-sized vectors).
MAX_HISTORY, MAX_ITERATIONS, MAX_RESTARTS = 1000, 1_000_000, 1000


def _int(v, what: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise GSError(f"invalid manifest: {what} must be an integer >= {lo}, got {v!r}")
    return v


def _check_recommended(rec: dict, depth: int) -> None:
    """The recommended settings a runtime acts on: the cut, the optimiser's counts, the stopping plan."""
    if not isinstance(rec, dict):
        raise GSError("invalid manifest: recommended must be an object")
    if "cut" in rec:
        c = _int(rec["cut"], "recommended.cut")
        if c >= depth:
            raise GSError(f"invalid manifest: recommended.cut {c} is not a cut of this model (0..{depth - 1})")
    opt = rec.get("optimizer", {})
    if not isinstance(opt, dict):
        raise GSError("invalid manifest: recommended.optimizer must be an object")
    for k, hi in (("max_iter", MAX_ITERATIONS), ("max_fun", MAX_ITERATIONS), ("history", MAX_HISTORY),
                  ("restarts", MAX_RESTARTS)):
        if k in opt and _int(opt[k], f"recommended.optimizer.{k}", 1) > hi:
            raise GSError(f"invalid manifest: recommended.optimizer.{k} = {opt[k]} is above {hi}")
    stop = rec.get("stopping", {})
    if not isinstance(stop, dict):
        raise GSError("invalid manifest: recommended.stopping must be an object")
    _check_plan(stop, "recommended.stopping")
    ops = stop.get("operators")
    if ops is not None and not (isinstance(ops, list) and ops and all(isinstance(o, str) and o for o in ops)):
        raise GSError("invalid manifest: recommended.stopping.operators must be a non-empty list of operator types")
    per = stop.get("per_operator", {})
    if not isinstance(per, dict) or not all(isinstance(k, str) and k and isinstance(v, dict) for k, v in per.items()):
        raise GSError("invalid manifest: recommended.stopping.per_operator must map operator types to plans")
    for k, v in per.items():
        _check_plan(v, f"recommended.stopping.per_operator.{k}")
    sp = rec.get("skip_prior")
    if sp is not None:
        w = sp.get("weight") if isinstance(sp, dict) else None
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise GSError("invalid manifest: recommended.skip_prior must be an object with a weight >= 0")
    meth = rec.get("method")
    if meth is not None:
        per = meth.get("per_operator", {}) if isinstance(meth, dict) else None
        if not (isinstance(meth, dict) and isinstance(meth.get("default", "gs"), str) and meth.get("default", "gs")
                and isinstance(per, dict) and all(isinstance(k, str) and isinstance(v, str) and v
                                                  for k, v in per.items())):
            raise GSError("invalid manifest: recommended.method must be an object with a default method name and "
                          "per_operator mapping operator types to method names")
    gtv = rec.get("gs_tv")
    if gtv is not None:
        if not isinstance(gtv, dict):
            raise GSError("invalid manifest: recommended.gs_tv must be an object")
        for key, positive in (("lam", False), ("gamma", True)):
            w = gtv.get(key, {})
            if not isinstance(w, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and (v > 0 if positive else v >= 0) for k, v in w.items()):
                raise GSError(f"invalid manifest: recommended.gs_tv.{key} must map operator types to numbers "
                              f"{'> 0' if positive else '>= 0'}")


def _check_plan(stop: dict, where: str) -> None:
    for k, hi in (("restarts", MAX_RESTARTS), ("max_iter", MAX_ITERATIONS), ("patience", MAX_ITERATIONS)):
        if k in stop and _int(stop[k], f"{where}.{k}", 1) > hi:
            raise GSError(f"invalid manifest: {where}.{k} = {stop[k]} is above {hi}")
    if "holdout" in stop and not (isinstance(stop["holdout"], (int, float)) and not isinstance(stop["holdout"], bool)
                                  and 0 < stop["holdout"] < 1):
        raise GSError(f"invalid manifest: {where}.holdout must be in (0, 1), got {stop['holdout']!r}")
    if stop.get("rule", "fixed") not in ("fixed", "holdout", "refit"):
        raise GSError(f"invalid manifest: unknown {where}.rule {stop.get('rule')!r}")


def read_manifest_json(mf: Path, what: str, fmt: str, version: int) -> dict:
    """The JSON object of the manifest file ``mf`` (size-capped, strict JSON) whose ``format`` is ``fmt`` and
    ``format_version`` is ``version``; ``what`` names the kind in the one-line :class:`GSError` otherwise."""
    if not mf.is_file():
        raise GSError(f"no manifest.json in {mf.parent}")
    try:
        if mf.stat().st_size > MAX_MANIFEST_BYTES:
            raise GSError(f"manifest {mf} is {mf.stat().st_size} bytes: not a {what}")
        raw = strictjson.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, strictjson.BadJSON) as e:
        raise GSError(f"unreadable manifest {mf}: {e}".splitlines()[0]) from None
    except RecursionError:
        raise GSError(f"unreadable manifest {mf}: nested too deeply") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise GSError(f"{mf} is not a {what}")
    if raw.get("format_version") != version:
        raise GSError(f"{mf}: unsupported format_version {raw.get('format_version')!r} (this runtime reads {version})")
    return raw


def load_manifest(model_dir: str | Path, verify: bool = True) -> Manifest:
    """Read and validate ``model_dir/manifest.json``.

    With ``verify`` (the default) every file listed in ``files`` is checked against its sha256 and every
    graph and weight file must be listed. Raises :class:`GSError` with a one-line message on a missing,
    malformed or tampered manifest or file, or a path escaping the folder.
    """
    if model_dir is None or not isinstance(model_dir, (str, Path)):
        raise GSError(f"model folder must be a path, got {model_dir!r}")
    root = Path(model_dir)
    mf = root / "manifest.json"
    raw = read_manifest_json(mf, "gs-onnx manifest", FORMAT, FORMAT_VERSION)
    try:
        tensors = {}
        for k, v in _req(raw, "tensors", "").items():
            if not isinstance(v, list):
                raise GSError(f"invalid manifest: tensor {k!r} has no shape list")
            tensors[k] = tuple(_int(d, f"a dimension of tensor {k!r}", 1) for d in v)
        if not _req(raw, "blocks", ""):
            raise GSError("invalid manifest: the model has no blocks")
        blocks = []
        for i, b in enumerate(_req(raw, "blocks", "")):
            w = f"blocks[{i}]."
            spec = BlockSpec(index=int(_req(b, "index", w)), inputs=tuple(_req(b, "inputs", w)),
                             outputs=tuple(_req(b, "outputs", w)), forward=_graph(_req(b, "forward", w), w + "forward."),
                             vjp=_graph(_req(b, "vjp", w), w + "vjp."), check=dict(b.get("check", {})))
            if spec.index != i:
                raise GSError(f"invalid manifest: block {i} has index {spec.index}")
            for n in spec.inputs + spec.outputs:
                if n not in tensors:
                    raise GSError(f"invalid manifest: block {i} names unknown tensor {n!r}")
            _check_block_graphs(spec)
            blocks.append(spec)
        cuts = tuple(CutSpec(cut=int(_req(c, "cut", "cuts[].")), inputs=tuple(_req(c, "inputs", "cuts[].")))
                     for c in _req(raw, "cuts", ""))
        if [c.cut for c in cuts] != list(range(len(blocks))):
            raise GSError("invalid manifest: cuts must be listed for 0..depth-1 in order")
        for c in cuts:
            for n in c.inputs:
                if n not in tensors:
                    raise GSError(f"invalid manifest: cut {c.cut} names unknown tensor {n!r}")
            if set(c.inputs) != {n for b in blocks[c.cut:] for n in b.inputs} - {n for b in blocks[c.cut:] for n in b.outputs}:
                raise GSError(f"invalid manifest: cut {c.cut}'s inputs are not the tensors blocks {c.cut}.. read "
                              "from earlier blocks")
        out_range = _req(raw, "output_range", "")
        if (not isinstance(out_range, list) or len(out_range) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in out_range)
                or not all(math.isfinite(v) for v in out_range) or not out_range[0] < out_range[1]):
            raise GSError(f"invalid manifest: output_range must be two finite numbers lo < hi, got {out_range!r}")
        _check_recommended(raw.get("recommended", {}), len(blocks))
        lat = _req(raw, "latent", "")
        man = Manifest(
            root=root, name=str(raw.get("name", root.name)), architecture=str(_req(_req(raw, "architecture", ""), "name", "architecture.")),
            config=dict(raw["architecture"].get("config", {})), tensors=tensors, latent=str(_req(lat, "name", "latent.")),
            latent_prior=str(lat.get("prior", "normal")), image=str(_req(_req(raw, "image", ""), "name", "image.")),
            output_range=tuple(float(v) for v in _req(raw, "output_range", "")), blocks=tuple(blocks), cuts=cuts,
            recommended=dict(raw.get("recommended", {})), opset=int(raw.get("opset", 0)),
            provenance=dict(raw.get("provenance", {})), untrained=bool(raw.get("untrained", False)), raw=raw)
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as e:
        raise GSError(f"invalid manifest {mf}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if man.latent_prior not in LATENT_PRIORS:
        raise GSError(f"invalid manifest: unknown latent.prior {man.latent_prior!r} (one of {', '.join(LATENT_PRIORS)})")
    if man.image not in tensors or man.latent not in tensors:
        raise GSError("invalid manifest: latent or image tensor not declared in tensors")
    files = raw.get("files", {})
    if not isinstance(files, dict):
        raise GSError("invalid manifest: files must map paths to sha256")
    needed = {g.file for b in man.blocks for g in (b.forward, b.vjp)}
    needed |= {b["weights"] for b in raw["blocks"] if isinstance(b, dict) and b.get("weights")}
    for rel in sorted(needed | set(files)):
        safe_path(root, rel)
    unused = sorted(set(files) - needed)
    if unused:  # nothing reads it, so nothing would check it: refused rather than hashed
        raise GSError(f"invalid manifest: files lists {unused[0]!r}, which no block uses")
    if verify:
        missing = sorted(needed - set(files))
        if missing:
            raise GSError(f"manifest lists no checksum for {missing[0]}")
        for rel, digest in files.items():
            p = regular_file(safe_path(root, rel), "model file")
            if p.stat().st_size > MAX_MODEL_FILE_BYTES:
                raise GSError(f"model file {p} is {p.stat().st_size} bytes, above the {MAX_MODEL_FILE_BYTES >> 30} "
                              "GiB a block's file may have")
            if sha256_file(p) != digest:
                raise GSError(f"checksum mismatch for {p}: the file was modified or corrupted")
    return man


def _every_node(model):
    """(where, node) for every node of the graph and of every model-local function body (a ``Loop`` can hide
    in a function a node calls), ``where`` naming the function."""
    for n in model.graph.node:
        yield "", n
    for f in model.functions:
        for n in f.node:
            yield f" in function {f.name}", n


def load_graph(man: Manifest, rel: str, inputs: tuple[str, ...], outputs: tuple[str, ...]):
    """The ONNX graph ``rel`` of a model as a ModelProto whose external data is embedded from verified bytes.

    The file checked is the file run: the graph's bytes and every external-data file it references are read
    once, checked against the manifest's sha256, and the weights are copied into the model, so ONNX Runtime
    never opens a path itself. Every external-data ``location`` must be a relative path inside the model
    folder and listed in ``files``; the graph's inputs and outputs must be the names the manifest declares,
    with the declared per-sample shapes. Raises GSError naming the problem.
    """
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a runtime dependency
        raise GSError("reading model graphs needs the onnx package: pip install onnx") from None
    files = man.raw.get("files", {})
    cache: dict[str, bytes] = {}

    def verified(name: str, what: str) -> bytes:
        if name in cache:
            return cache[name]
        p = safe_path(man.root, name)
        if name not in files:
            raise GSError(f"{what} {name!r} of model {man.name} is not listed (with its sha256) in the manifest")
        regular_file(p, "model file")
        if p.stat().st_size > MAX_MODEL_FILE_BYTES:
            raise GSError(f"model file {p} is {p.stat().st_size} bytes, above the {MAX_MODEL_FILE_BYTES >> 30} GiB "
                          "a block's file may have")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise GSError(f"cannot read model file {p}: {e.strerror or e}") from None
        if hashlib.sha256(data).hexdigest() != files[name]:
            raise GSError(f"checksum mismatch for {p}: the file was modified or corrupted")
        cache[name] = data
        return data

    try:
        model = onnx.ModelProto.FromString(verified(rel, "graph"))
    except GSError:
        raise
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise GSError(f"model file {rel} is not an ONNX graph: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    tensors = list(model.graph.initializer) + [t for n in model.graph.node for a in n.attribute
                                               if a.type == onnx.AttributeProto.TENSOR for t in [a.t]]
    for where, n in _every_node(model):
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise GSError(f"model file {rel}: subgraphs ({n.op_type}{where}) are not allowed in block graphs")
    for t in tensors:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc or Path(loc).is_absolute() or "\\" in loc or ".." in Path(loc).parts:
            raise GSError(f"model file {rel}: external data location {loc!r} is not a relative path inside the "
                          "model folder")
        data = verified(loc, f"external data of {rel}")
        try:
            off, length = int(info.get("offset", 0)), int(info.get("length", len(data) - int(info.get("offset", 0))))
        except ValueError:
            raise GSError(f"model file {rel}: bad external data offset/length for {t.name!r}") from None
        if off < 0 or length < 0 or off + length > len(data):
            raise GSError(f"model file {rel}: external data of {t.name!r} lies outside {loc}")
        t.raw_data = data[off:off + length]
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
    g_in = tuple(v.name for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer})
    g_out = tuple(v.name for v in model.graph.output)
    if g_in != tuple(inputs) or g_out != tuple(outputs):
        raise GSError(f"model file {rel} does not compute what the manifest says (inputs {list(g_in)}, outputs "
                      f"{list(g_out)}; expected {list(inputs)} -> {list(outputs)}): graphs swapped or edited?")
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name not in man.tensors:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim][1:]
        want = list(man.tensors[v.name])
        if len(dims) != len(want) or any(d is not None and d != w for d, w in zip(dims, want)):
            raise GSError(f"model file {rel}: tensor {v.name!r} has shape {dims} in the graph but {want} in the "
                          "manifest")
    return model
