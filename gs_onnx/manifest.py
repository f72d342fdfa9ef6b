"""The cut manifest: how a model's per-block ONNX graphs chain and what a cut leaves to optimise.

``models/<name>/manifest.json`` is the single entry point to an exported model; ``docs/manifest.md``
documents every field for consumers in other languages. :func:`load_manifest` reads it, checks the
schema, confines every path to the model folder and verifies the sha256 of every file it names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import GSError

FORMAT = "gs-onnx-manifest"
FORMAT_VERSION = 1


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
        """The spec of cut ``c``; GSError when out of range."""
        if not isinstance(c, int) or not 0 <= c < self.depth:
            raise GSError(f"cut {c} out of range for model {self.name}: valid cuts are 0..{self.depth - 1}")
        return self.cuts[c]

    def to_unit(self) -> tuple[float, float]:
        """(scale, shift) with x01 = scale * x + shift mapping ``output_range`` onto [0, 1]."""
        lo, hi = self.output_range
        return 1.0 / (hi - lo), -lo / (hi - lo)

    def path(self, rel: str) -> Path:
        return safe_path(self.root, rel)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_path(root: Path, rel: str) -> Path:
    """``root / rel``, refusing absolute paths and anything that resolves outside ``root``."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or "\\" in rel:
        raise GSError(f"manifest path {rel!r} is not a relative path inside the model folder")
    p = (root / rel).resolve()
    try:
        p.relative_to(root.resolve())
    except ValueError:
        raise GSError(f"manifest path {rel!r} escapes the model folder {root}") from None
    return p


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


def load_manifest(model_dir: str | Path, verify: bool = True) -> Manifest:
    """Read and validate ``model_dir/manifest.json``.

    With ``verify`` (the default) every file listed in ``files`` is checked against its sha256 and every
    graph and weight file must be listed. Raises :class:`GSError` with a one-line message on a missing,
    malformed or tampered manifest or file, or a path escaping the folder.
    """
    root = Path(model_dir)
    mf = root / "manifest.json"
    if not mf.is_file():
        raise GSError(f"no manifest.json in {root}")
    try:
        raw = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GSError(f"unreadable manifest {mf}: {e}".splitlines()[0]) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise GSError(f"{mf} is not a gs-onnx manifest")
    if raw.get("format_version") != FORMAT_VERSION:
        raise GSError(f"{mf}: unsupported format_version {raw.get('format_version')!r} (this runtime reads {FORMAT_VERSION})")
    try:
        tensors = {k: tuple(int(d) for d in v) for k, v in _req(raw, "tensors", "").items()}
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
        lat = _req(raw, "latent", "")
        man = Manifest(
            root=root, name=str(raw.get("name", root.name)), architecture=str(_req(_req(raw, "architecture", ""), "name", "architecture.")),
            config=dict(raw["architecture"].get("config", {})), tensors=tensors, latent=str(_req(lat, "name", "latent.")),
            latent_prior=str(lat.get("prior", "normal")), image=str(_req(_req(raw, "image", ""), "name", "image.")),
            output_range=tuple(float(v) for v in _req(raw, "output_range", "")), blocks=tuple(blocks), cuts=cuts,
            recommended=dict(raw.get("recommended", {})), opset=int(raw.get("opset", 0)),
            provenance=dict(raw.get("provenance", {})), untrained=bool(raw.get("untrained", False)), raw=raw)
    except (TypeError, ValueError, AttributeError) as e:
        raise GSError(f"invalid manifest {mf}: {e}".splitlines()[0]) from None
    if man.image not in tensors or man.latent not in tensors:
        raise GSError("invalid manifest: latent or image tensor not declared in tensors")
    files = raw.get("files", {})
    if not isinstance(files, dict):
        raise GSError("invalid manifest: files must map paths to sha256")
    needed = {g.file for b in man.blocks for g in (b.forward, b.vjp)}
    needed |= {b["weights"] for b in raw["blocks"] if isinstance(b, dict) and b.get("weights")}
    for rel in sorted(needed | set(files)):
        safe_path(root, rel)
    if verify:
        missing = sorted(needed - set(files))
        if missing:
            raise GSError(f"manifest lists no checksum for {missing[0]}")
        for rel, digest in files.items():
            p = safe_path(root, rel)
            if not p.is_file():
                raise GSError(f"model file missing: {p}")
            if sha256_file(p) != digest:
                raise GSError(f"checksum mismatch for {p}: the file was modified or corrupted")
    return man
