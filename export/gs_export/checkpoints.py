"""Loading generator weights from checkpoints (state_dicts only, ``weights_only=True``) and key mapping."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from .architectures import DCGAN, Generator, build, dcgan_tutorial_key_map

KEY_MAPS = {"dcgan-tutorial": dcgan_tutorial_key_map}


def load_state_dict(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (never unpickles arbitrary objects); ``key`` selects a nested dict."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if key:
        for k in key.split("."):
            if not isinstance(obj, dict) or k not in obj:
                raise KeyError(f"checkpoint {path} has no key {key!r}")
            obj = obj[k]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state_dict (select one with --key)")
    return obj


def apply_key_map(gen: Generator, sd: dict, key_map: str | None) -> dict:
    """Rename keys: ``key_map`` is a named map (``dcgan-tutorial``), a JSON file {old: new}, or None."""
    if not key_map:
        return sd
    if key_map in KEY_MAPS:
        m = KEY_MAPS[key_map](gen)
    else:
        m = json.loads(Path(key_map).read_text())
    return {m.get(k, k): v for k, v in sd.items()}


def load_generator(arch: str, config: dict, path: str | Path, key: str | None = None,
                   key_map: str | None = None) -> Generator:
    gen = build(arch, **config)
    sd = apply_key_map(gen, load_state_dict(path, key), key_map)
    gen.load_state_dict(sd, strict=True)
    return gen.eval()


DIGIFACE = {"package": "gan-face-generate", "version": "1.1.1", "member": "gan_face_generate/weights.tar",
            "key": "netG_state_dict"}


def fetch_digiface(wheel: str | Path | None = None, workdir: str | Path | None = None) -> tuple[Path, dict]:
    """The DigiFace-1M DCGAN weights from the PyPI wheel ``gan-face-generate==1.1.1`` (MIT licence).

    Downloads the wheel with pip (at export time only) unless ``wheel`` is given; returns the extracted
    ``weights.tar`` path and provenance fields (wheel name and sha256).
    """
    import hashlib

    work = Path(workdir or tempfile.mkdtemp(prefix="digiface."))
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work),
                        f"{DIGIFACE['package']}=={DIGIFACE['version']}"], check=True)
        wheel = next(work.glob("gan_face_generate-*.whl"))
    wheel = Path(wheel)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(wheel) as z:
        z.extract(DIGIFACE["member"], work)
        licence = z.read("gan_face_generate-1.1.1.dist-info/licenses/LICENSE").decode().splitlines()[0]
    return work / DIGIFACE["member"], {"wheel": wheel.name, "wheel_sha256": digest, "licence_line": licence}


def load_digiface(wheel: str | Path | None = None) -> tuple[DCGAN, dict]:
    path, info = fetch_digiface(wheel)
    gen = load_generator("dcgan", {}, path, key=DIGIFACE["key"], key_map="dcgan-tutorial")
    prov = {
        "weights": f"PyPI {DIGIFACE['package']}=={DIGIFACE['version']}, {DIGIFACE['member']} "
                   f"['{DIGIFACE['key']}'] (the PyTorch DCGAN tutorial generator, nz=100, ngf=64)",
        "training_data": "DigiFace-1M (synthetic faces, Bae et al., WACV 2023), not CelebA",
        "licence": "MIT (gan-face-generate, Copyright (c) 2023, chien liu)",
        "imported_by": "gs-export digiface", **info,
    }
    return gen, prov
