"""Finding installed models: ``--models-dir``, then ``$GS_ONNX_MODELS`` (os.pathsep-separated folders),
then the models shipped with gs-onnx (the repository's ``models/`` folder, installed as the package data
``gs_onnx_models`` by any install: ``pip install .``, a wheel, or an editable install)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import GSError
from .manifest import Manifest, load_manifest

def _shipped() -> Path:
    try:
        import gs_onnx_models

        return Path(gs_onnx_models.__file__).resolve().parent
    except ImportError:  # a source tree on sys.path, never installed
        return Path(__file__).resolve().parents[2] / "models"


SHIPPED = _shipped()
DEFAULT_MODEL = "began"  # the paper's BEGAN, trained on CelebA by this project (docs/training.md)


def default_model() -> str:
    """``$GS_ONNX_DEFAULT_MODEL`` if set, else :data:`DEFAULT_MODEL`."""
    return os.environ.get("GS_ONNX_DEFAULT_MODEL") or DEFAULT_MODEL


def search_path(models_dir: str | Path | None = None) -> list[Path]:
    dirs: list[Path] = []
    if models_dir:
        if not Path(models_dir).is_dir():
            raise GSError(f"--models-dir {models_dir} is not a folder")
        dirs.append(Path(models_dir))
    env = os.environ.get("GS_ONNX_MODELS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(SHIPPED)
    return dirs


def is_path(name: str) -> bool:
    """Whether a model (or denoiser) given on the command line is a folder (``./mine``, ``../m``, ``/opt/m``,
    ``~/m``) rather than a name: a bare name is looked up on the search path only, never in the working
    directory (a folder of that name there must not shadow the installed model)."""
    return "/" in name or "\\" in name or name in (".", "..") or name.startswith("~") or Path(name).is_absolute()


def resolve(name: str, models_dir: str | Path | None = None) -> Path:
    """The folder of model ``name``: a path (:func:`is_path`) is that folder; a bare name is looked up in
    ``models_dir``, then ``$GS_ONNX_MODELS``, then the shipped models."""
    if isinstance(name, Path):
        name = str(name) if (str(name).startswith((".", "/", "~")) or name.is_absolute() or len(name.parts) > 1) \
            else f"./{name}"
    if not isinstance(name, str) or not name:
        raise GSError(f"model must be a name or a folder, got {name!r}")
    if is_path(name):
        p = Path(name).expanduser()
        if (p / "manifest.json").is_file():
            return p
        raise GSError(f"unknown model {name!r}: no manifest.json there")
    for d in search_path(models_dir):
        if (d / name / "manifest.json").is_file():
            return (d / name).absolute()
    known = ", ".join(sorted(available(models_dir))) or "none"
    raise GSError(f"unknown model {name!r} (installed: {known}); a model of your own: --model FOLDER, "
                  "--models-dir DIR or $GS_ONNX_MODELS")


def load(name: str, models_dir: str | Path | None = None, verify: bool = True) -> Manifest:
    """Resolve and load (checksums verified) model ``name``."""
    return load_manifest(resolve(name, models_dir), verify=verify)


def folders_with_manifest(dirs) -> dict[str, Path]:
    """{name: folder} of the subfolders of ``dirs`` that hold a manifest.json (the first of a name wins)."""
    out: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            for sub in sorted(d.iterdir()):
                if (sub / "manifest.json").is_file() and sub.name not in out:
                    out[sub.name] = sub
    return out


def available(models_dir: str | Path | None = None) -> dict[str, Path]:
    """{name: folder} of every model on the search path (first one wins)."""
    return folders_with_manifest(search_path(models_dir))
