"""A denoiser folder: the image prior of ``--method pnp`` and of the default beyond it, shipped beside the
generators with the same guarantees (a manifest, every file's sha256 verified, paths confined to the folder, the
graph's bytes checked before ONNX Runtime sees them).

``models/priors/<name>/manifest.json`` (format ``gs-onnx-denoiser``, docs/manifest.md) names one ONNX graph
``denoiser.onnx``: inputs ``x`` (B, 3, H, W) float32 in [0, 1] and ``sigma`` (B, 1, 1, 1) float32, the noise level
(standard deviation, images in [0, 1]); output ``denoised`` (B, 3, H, W). H and W must be multiples of
``image.multiple_of``. ``sigma.max`` is the largest level it was trained for. :func:`load_denoiser` reads it;
:class:`gs_onnx.engine.denoiser.Denoiser` runs it.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..errors import GSError
from ..io.paths import regular_file
from .manifest import MAX_MODEL_FILE_BYTES, read_manifest_json, safe_path, sha256_file

FORMAT = "gs-onnx-denoiser"
FORMAT_VERSION = 1
#: Where denoisers live on every models folder of the search path (``models/priors/<name>``).
SUBFOLDER = "priors"
#: The denoiser ``--method pnp`` uses unless ``--denoiser`` names another.
DEFAULT_DENOISER = "unet-celeba"
INPUTS = ("x", "sigma")
OUTPUTS = ("denoised",)


@dataclasses.dataclass(frozen=True)
class DenoiserManifest:
    """A loaded, verified denoiser folder."""

    root: Path
    name: str
    architecture: str
    graph: str
    sigma_max: float
    multiple_of: int
    opset: int
    provenance: dict
    raw: dict

    @property
    def tensors(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes as :func:`gs_onnx.generator.manifest.load_graph` checks them (H, W are free)."""
        return {"x": (3, 0, 0), "sigma": (1, 1, 1), "denoised": (3, 0, 0)}


def load_denoiser(folder: str | Path, verify: bool = True) -> DenoiserManifest:
    """Read ``folder/manifest.json`` and verify every file it lists (GSError naming the problem)."""
    root = Path(folder)
    mf = root / "manifest.json"
    raw = read_manifest_json(mf, "gs-onnx denoiser manifest", FORMAT, FORMAT_VERSION)
    try:
        graph = raw["graph"]
        if not isinstance(graph, dict) or tuple(graph.get("inputs", ())) != INPUTS \
                or tuple(graph.get("outputs", ())) != OUTPUTS or not isinstance(graph.get("file"), str):
            raise GSError(f"invalid denoiser manifest {mf}: graph must name a file with inputs {list(INPUTS)} and "
                          f"outputs {list(OUTPUTS)}")
        sigma_max = raw["sigma"]["max"]
        multiple = raw["image"]["multiple_of"]
        if isinstance(sigma_max, bool) or not isinstance(sigma_max, (int, float)) or not math.isfinite(sigma_max) \
                or not 0 < sigma_max <= 1:
            raise GSError(f"invalid denoiser manifest {mf}: sigma.max must be a number in (0, 1]")
        if isinstance(multiple, bool) or not isinstance(multiple, int) or not 1 <= multiple <= 64:
            raise GSError(f"invalid denoiser manifest {mf}: image.multiple_of must be an integer in 1..64")
        man = DenoiserManifest(root=root, name=str(raw.get("name", root.name)),
                               architecture=str(raw["architecture"]["name"]), graph=graph["file"],
                               sigma_max=float(sigma_max), multiple_of=multiple, opset=int(raw.get("opset", 0)),
                               provenance=dict(raw.get("provenance", {})), raw=raw)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise GSError(f"invalid denoiser manifest {mf}: {type(e).__name__}: {e}".splitlines()[0]) from None
    files = raw.get("files")
    if not isinstance(files, dict) or set(files) != {man.graph}:
        raise GSError(f"invalid denoiser manifest {mf}: files must list exactly the graph {man.graph!r} with its sha256")
    p = regular_file(safe_path(root, man.graph), "denoiser file")
    if verify:
        if p.stat().st_size > MAX_MODEL_FILE_BYTES:
            raise GSError(f"denoiser file {p} is {p.stat().st_size} bytes: too large")
        if sha256_file(p) != files[man.graph]:
            raise GSError(f"checksum mismatch for {p}: the file was modified or corrupted")
    return man


def search_folders(models_dir: str | Path | None = None) -> list[Path]:
    """``priors/`` of every models folder on the search path (:func:`gs_onnx.generator.registry.search_path`)."""
    from .registry import search_path

    return [d / SUBFOLDER for d in search_path(models_dir)]


def available_denoisers(models_dir: str | Path | None = None) -> dict[str, Path]:
    """{name: folder} of every denoiser on the search path (the first of a name wins)."""
    from .registry import folders_with_manifest

    return folders_with_manifest(search_folders(models_dir))


def find_denoiser(name: str | None = None, models_dir: str | Path | None = None) -> DenoiserManifest:
    """The denoiser ``name``, verified: a bare name is looked up in ``priors/`` of the models search path (never in
    the working directory); a path (``./mine``, ``/opt/x``) is a folder."""
    name = str(name or DEFAULT_DENOISER)
    if not name:
        raise GSError("--denoiser must be a name or a folder")
    if "/" in name or "\\" in name or name in (".", "..") or Path(name).is_absolute():
        # a path (./mine, /opt/priors/x): a folder; a bare name is never looked up in the working directory
        if not (Path(name) / "manifest.json").is_file():
            raise GSError(f"--denoiser {name}: no manifest.json there")
        return load_denoiser(Path(name))
    found = available_denoisers(models_dir)
    if name not in found:
        raise GSError(f"unknown denoiser {name!r} (installed: {', '.join(sorted(found)) or 'none'})")
    return load_denoiser(found[name])
