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
        walked = ""
        for k in key.split("."):
            if not isinstance(obj, dict) or k not in obj:
                raise ValueError(f"checkpoint {Path(path).name} has no key {key!r}" + _candidates(obj, walked))
            obj, walked = obj[k], walked + k + "."
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        where = f" under --key {key}" if key else ""
        raise ValueError(f"{Path(path).name}: no state_dict{where}" + _candidates(obj, key + "." if key else ""))
    return obj


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _candidates(obj, prefix: str = "", depth: int = 3) -> str:
    """'; state_dicts inside: --key a, --key b.c' (nested dicts searched a few levels deep), or ''."""
    found: list[str] = []

    def walk(o, pre, d):
        if not isinstance(o, dict) or d < 0:
            return
        for k, v in o.items():
            name = f"{pre}{k}"
            if _is_state_dict(v):
                found.append(name)
            elif isinstance(v, dict):
                walk(v, name + ".", d - 1)

    walk(obj, prefix, depth)
    return f"; state_dicts inside: {', '.join('--key ' + f for f in found[:6])}" if found else ""


def apply_key_map(gen: Generator, sd: dict, key_map: str | None) -> dict:
    """Rename keys: ``key_map`` is a named map (``dcgan-tutorial``), a JSON file {old: new}, or None."""
    if not key_map:
        return sd
    if key_map in KEY_MAPS:
        m = KEY_MAPS[key_map](gen)
    else:
        p = Path(key_map)
        if not p.is_file():
            raise ValueError(f"--key-map {key_map}: neither a named map ({', '.join(KEY_MAPS)}) nor a JSON file")
        try:
            m = json.loads(p.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"--key-map {key_map} is not valid JSON ({e})") from None
        if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
            raise ValueError(f"--key-map {key_map} must be a JSON object {{checkpoint key: our key}} of strings")
    out = {m.get(k, k): v for k, v in sd.items()}
    if len(out) != len(sd):
        raise ValueError(f"--key-map {key_map} maps two checkpoint keys to the same key")
    return out


def load_generator(arch: str, config: dict, path: str | Path, key: str | None = None,
                   key_map: str | None = None) -> Generator:
    from .architectures import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    known = [n for n, _, _ in config_keys(arch)]
    bad = sorted(set(config) - set(known))
    if bad:
        raise ValueError(f"--config key {bad[0]!r} is not one of {arch}'s: {', '.join(known)} "
                         f"(gs-export keys --arch {arch})")
    gen = build(arch, **config)
    sd = apply_key_map(gen, load_state_dict(path, key), key_map)
    check_keys(gen, sd)
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


# ------------------------------------------------------------------------------- foreign checkpoints

def config_keys(arch: str) -> list[tuple[str, object, str]]:
    """Every ``--config`` key of ``arch``: (name, default, meaning)."""
    import inspect

    from .architectures import ARCHITECTURES

    meaning = {
        ("dcgan", "nz"): "latent size (z is nz x 1 x 1)",
        ("dcgan", "ngf"): "width: the first block has 8 * ngf channels at 64 px",
        ("dcgan", "nc"): "image channels",
        ("dcgan", "image_size"): "image side, 4 * 2^k (64: 5 blocks)",
        ("began", "nz"): "latent size",
        ("began", "ch"): "channels of every conv block",
        ("began", "image_size"): "image side, base * 2^k",
        ("began", "skip"): "the paper's skip connections (the nearest-upsampled h1 concatenated before every later block)",
        ("began", "output_activation"): "none | tanh | sigmoid | relu | elu after the last conv",
        ("began", "nc"): "image channels",
        ("began", "base"): "side of h1 (the Linear's output is ch x base x base)",
        ("vae", "nz"): "latent size",
        ("vae", "widths"): "channels of h1 (4 x 4) and of each upsampling block; image side 4 * 2^(len-1)",
        ("vae", "nc"): "image channels",
    }
    cls = ARCHITECTURES[arch]
    sig = inspect.signature(cls.__init__)
    out = []
    for name, prm in sig.parameters.items():
        if name == "self":
            continue
        default = prm.default
        if isinstance(default, tuple):
            default = list(default)
        out.append((name, default, meaning.get((arch, name), "")))
    return out


def expected_keys(arch: str, config: dict) -> dict[str, tuple[int, ...]]:
    """The state_dict keys and shapes ``gs-export checkpoint --arch ARCH --config CONFIG`` expects."""
    return {k: tuple(v.shape) for k, v in build(arch, **config).state_dict().items()}


def _tensors(path: str | Path, key: str | None) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in load_state_dict(path, key).items()}


def propose(shapes: dict[str, tuple[int, ...]]) -> list[dict]:
    """Architecture settings that fit a checkpoint's tensors, with a key map {checkpoint key: our key}
    pairing the tensors in order by shape; the first proposals fit best. Where nothing fits, an empty list."""
    from .architectures import ARCHITECTURES

    items = [(k, s) for k, s in shapes.items() if not k.endswith("num_batches_tracked")]
    out = []
    candidates = []
    four = [s for _, s in items if len(s) == 4]
    two = [s for _, s in items if len(s) == 2]
    if four and four[0][2:] == (4, 4) and four[0][0] != four[0][1]:  # DCGAN: ConvTranspose weights cin x cout x 4 x 4
        nz, w0 = four[0][0], four[0][1]
        n_up = len(four) - 1
        candidates.append(("dcgan", {"nz": nz, "ngf": w0 // 2 ** (n_up - 1), "nc": four[-1][1],
                                     "image_size": 4 * 2 ** n_up}))
    if two and four and four[0][2:] == (3, 3):  # BEGAN: Linear nz -> ch*base^2, 3x3 convs; VAE: Linear -> w0*16
        nz = two[0][1]
        ch = four[0][0]
        base = int(round((two[0][0] / ch) ** 0.5))
        convs = [s for s in four if s[2:] == (3, 3)]
        nc = convs[-1][0]
        skip = any(s[1] == 2 * s[0] for s in convs)
        n_blocks = (len(convs) - 1) // 2  # two convs per block, one to RGB
        candidates.append(("began", {"nz": nz, "ch": ch, "image_size": base * 2 ** (n_blocks - 1), "skip": skip,
                                     "nc": nc, "base": base, "output_activation": "none"}))
        widths = [two[0][0] // 16] + [s[0] for s in convs[:-1]]
        candidates.append(("vae", {"nz": nz, "widths": widths, "nc": nc}))
    for arch, cfg in candidates:
        try:
            want = expected_keys(arch, cfg)
        except Exception:  # noqa: BLE001 - a guess that does not build is not proposed
            continue
        ours = [(k, s) for k, s in want.items() if not k.endswith("num_batches_tracked")]
        if [s for _, s in ours] != [s for _, s in items]:
            continue
        key_map = {old: new for (old, _), (new, _) in zip(items, ours) if old != new}
        out.append({"arch": arch, "config": cfg, "key_map": key_map,
                    "note": "output_activation cannot be read from weights: check it" if arch == "began" else ""})
    return out


def check_keys(gen: Generator, sd: dict) -> None:
    """A one-line error for a state_dict that does not fit ``gen`` (instead of torch's multi-line dump)."""
    want = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = [k for k in want if k not in have and not k.endswith("num_batches_tracked")]
    extra = [k for k in have if k not in want]
    wrong = [k for k in want if k in have and want[k] != have[k]]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first: {extra[0]})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape (first: {wrong[0]} {have[wrong[0]]} vs {want[wrong[0]]})")
        raise ValueError("the checkpoint does not fit: " + "; ".join(parts) +
                         " -- see gs-export inspect CHECKPOINT and gs-export keys --arch ARCH")
