"""Measurement files: a ``.npy`` of measurements ``y = A x + eta`` plus a ``.json`` sidecar that describes them.

A measurement file pair is ``name.npy`` (float32, shape ``(B, m)``, written by ``np.save``) and
``name.json``: the caller's fields (operator description, seed, m, n, image shape, noise, sigma,
sources, preprocessing, model) plus ``format``, ``format_version``, ``shape``, ``dtype`` and the
``sha256`` of the ``.npy`` bytes. ``A`` itself is never stored: :func:`gs_onnx.physics.operator_for`
rebuilds it from the sidecar's ``"operator"`` description. This module knows files, not physics: it imports
nothing from the operators.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from gs_onnx.physics import GaussianOperator, sidecar_fields
>>> op = GaussianOperator(m=100, n=12288, seed=0)
>>> y = np.zeros((2, 100), np.float32)
>>> path = os.path.join(tempfile.mkdtemp(), "meas.npy")
>>> write_measurements(path, y, {**sidecar_fields(op), "image_shape": [3, 64, 64]})
>>> y2, sidecar = read_measurements(path)
>>> y2.shape, sidecar["m"]
((2, 100), 100)
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GSError
from . import strictjson
from .paths import regular_file

FORMAT = "gs-onnx-measurements"
FORMAT_VERSION = 2  # 2: the sidecar carries meta_sha256, a checksum of its own canonical content


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"sidecar field of type {type(o).__name__} is not JSON-serialisable")


def _write_atomic(targets: list[tuple[Path, bytes]]) -> None:
    from .publish import write_atomic

    write_atomic(targets)


def write_measurements(path: str | Path, y: np.ndarray, sidecar: dict[str, Any],
                       extra: list[tuple[Path, bytes]] = ()) -> None:
    """Write ``y`` to ``path`` (``.npy``) and its sidecar ``path.with_suffix(".json")``, atomically.

    Both files are written to temporary files in the target folder and moved into place with
    ``os.replace``; a crash between the two moves leaves a pair whose sha256 does not match, which
    :func:`read_measurements` refuses.

    Parameters
    ----------
    path : str or Path
        Target ``.npy`` file; its folder must exist.
    y : ndarray, float32, shape (B, m)
        Finite measurements.
    sidecar : dict
        The caller's JSON-able fields (numpy scalars and paths are converted). ``format``,
        ``format_version``, ``shape``, ``dtype`` and ``sha256`` are added (overwriting any given).
    extra : list of (path, bytes)
        Other files written in the same atomic step (gs-measure's PNGs of the measurements).
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise GSError(f"measurement file must end in .npy, got {path}")
    if not path.parent.is_dir():
        raise GSError(f"output folder does not exist: {path.parent}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 2:
        raise GSError(f"measurements must be 2-D (B, m), got shape {tuple(y.shape)}")
    if not np.isfinite(y).all():
        raise GSError("measurements contain NaN or Inf")
    if "m" in sidecar and sidecar["m"] != y.shape[1]:
        raise GSError(f"sidecar m={sidecar['m']!r} does not match measurements of shape {tuple(y.shape)}")
    buf = io.BytesIO()
    np.save(buf, y, allow_pickle=False)
    data = buf.getvalue()
    meta = dict(sidecar)
    meta.pop("meta_sha256", None)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        shape=list(y.shape),
        dtype="float32",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    meta = json.loads(json.dumps(meta, allow_nan=False, default=_json_default))
    meta["meta_sha256"] = meta_checksum(meta)
    text = json.dumps(meta, indent=2, allow_nan=False, default=_json_default) + "\n"
    _write_atomic([(path, data), (path.with_suffix(".json"), text.encode("utf-8")), *extra])


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def meta_checksum(meta: dict[str, Any]) -> str:
    """sha256 of a sidecar's canonical JSON (sorted keys, no spaces) without its ``meta_sha256`` field."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
                          .encode()).hexdigest()


#: The largest image a sidecar may describe (pixel values): far above any model here, far below a bad request.
MAX_N = 1 << 24


def check_sidecar(meta: dict[str, Any], y: np.ndarray, side_path: Path, trust: bool = False) -> None:
    """The one validation of a sidecar's content: types, and every redundant field agreeing with the others
    and with the array (an edited seed, operator, m or shape is refused, naming the field). A sidecar without
    its checksums (``meta_sha256``, ``operator_fingerprint``: format_version 1, or removed) is refused unless
    ``trust`` (``--trust-sidecar``): there is no downgrade path around them."""
    def bad(msg: str):
        raise GSError(f"sidecar {side_path.name}: {msg}")

    for key in ("meta_sha256", "operator_fingerprint"):
        if key not in meta and not trust:
            old = " (format_version 1)" if meta.get("format_version") == 1 else ""
            bad(f"{key} is missing{old}: measure again with gs-measure, or pass --trust-sidecar if you know where "
                "the file came from")
    if "meta_sha256" in meta and meta_checksum(meta) != meta["meta_sha256"]:
        bad("its content was edited after gs-measure wrote it (meta_sha256 does not match)")
    shape = meta.get("image_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        bad(f"image_shape must be three positive integers (C, H, W), got {shape!r}")
    n_img = int(np.prod(shape))
    if n_img > MAX_N:
        bad(f"image_shape {shape} is impossibly large ({n_img} values)")
    for key, typ, name in (("model", str, "string"), ("preprocessing", dict, "JSON object"),
                           ("sources", list, "list"), ("noise", (str, int, float), "string or number")):
        if key in meta and (not isinstance(meta[key], typ) or isinstance(meta[key], bool)):
            bad(f"{key} must be a {name}, got {type(meta[key]).__name__}")
    for i, src in enumerate(meta.get("sources", [])):
        if not isinstance(src, dict) or not isinstance(src.get("sha256", ""), str):
            bad(f"sources[{i}] must be an object with a sha256")
    if "sources" in meta and len(meta["sources"]) != y.shape[0]:
        bad(f"{len(meta['sources'])} source image(s) for {y.shape[0]} measured image(s)")
    op = meta.get("operator")
    if not isinstance(op, dict):
        bad("no operator description")
    m = y.shape[1]
    for key in ("m", "n"):
        if key in op and (isinstance(op[key], bool) or not isinstance(op[key], int)):
            bad(f"operator.{key} must be an integer, got {op[key]!r}")
        if key in meta and key in op and meta[key] != op[key]:
            bad(f"{key} = {meta[key]!r} but the operator's {key} = {op[key]!r}")
    if op.get("m", m) != m or meta.get("m", m) != m:
        bad(f"m = {meta.get('m', op.get('m'))!r} but the measurements have {m} columns")
    if op.get("n", n_img) != n_img or meta.get("n", n_img) != n_img:
        bad(f"n = {meta.get('n', op.get('n'))!r} but image_shape {shape} has {n_img} values")
    if "seed" in meta and "seed" in op and meta["seed"] != op["seed"]:
        bad(f"seed = {meta['seed']!r} but the operator's seed = {op['seed']!r}")
    if "ratio" in meta and (not isinstance(meta["ratio"], (int, float)) or abs(meta["ratio"] - m / n_img) > 1e-9):
        bad(f"ratio = {meta['ratio']!r} but m / n = {m / n_img:.6g}")
    if "sigma" in meta and (not isinstance(meta["sigma"], (int, float)) or not math.isfinite(meta["sigma"])
                            or meta["sigma"] < 0):
        bad(f"sigma must be a finite number >= 0, got {meta['sigma']!r}")


def _load_npy(path: Path, data: bytes) -> np.ndarray:
    """np.load of a plain .npy, with the header checked against the file's size first (a header claiming
    a huge shape is refused by name, not with "out of memory")."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran, dtype = reader[version](buf)
    except Exception:  # noqa: BLE001 - numpy raises ValueError on anything not .npy
        raise GSError(f"not a .npy file: {path}") from None
    if dtype.hasobject:
        raise GSError(f"{path} holds Python objects, which are never unpickled: not measurements")
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    if need != len(data) - buf.tell():
        raise GSError(f"{path}: its header claims shape {tuple(shape)} ({need} bytes) but the file holds "
                      f"{len(data) - buf.tell()} bytes of data")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise GSError(f"not a plain .npy array: {path} ({_one_line(e)})") from None


def read_sidecar(side_path: Path) -> dict[str, Any]:
    """A measurement sidecar, parsed: a regular file of at most 16 MB, strict JSON, one object whose ``format`` is
    :data:`FORMAT` (its other fields: :func:`read_measurements`); GSError otherwise."""
    regular_file(side_path, "measurement sidecar", "not found")
    try:
        if side_path.stat().st_size > (1 << 24):
            raise GSError(f"sidecar {side_path} is too large to be a measurement sidecar")
        meta = strictjson.loads(side_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, strictjson.BadJSON) as e:
        raise GSError(f"unreadable sidecar {side_path}: {_one_line(e)}") from None
    except RecursionError:
        raise GSError(f"unreadable sidecar {side_path}: nested too deeply") from None
    if not isinstance(meta, dict):
        raise GSError(f"sidecar {side_path} is not a JSON object")
    if meta.get("format") != FORMAT:
        raise GSError(f"{side_path} is not a gs-onnx measurement sidecar (format {meta.get('format')!r})")
    return meta


def read_measurements(path: str | Path, trust_sidecar: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Load and validate measurements written by :func:`write_measurements`.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file; the sidecar is ``path.with_suffix(".json")``.

    Returns
    -------
    y : ndarray, float32, shape (B, m)
        Finite measurements.
    sidecar : dict
        The parsed sidecar.

    Raises
    ------
    GSError
        Missing file or sidecar, invalid JSON or format tag, an array that is not 2-D float32 of the
        sidecar's shape (or ``m``), a sha256 mismatch, NaN/Inf values, or pickled content (never
        unpickled).
    """
    path = Path(path)
    side_path = path.with_suffix(".json")
    regular_file(path, "measurements", "not found")
    if path.suffix.lower() in IMAGE_SUFFIXES or _looks_like_image(path):
        raise GSError(f"{path} is an image, not a measurement file: measure it first (gs-measure {path.name} "
                      f"--model MODEL -o meas.npy), then recover meas.npy")
    if path.suffix.lower() != ".npy":
        raise GSError(f"{path} is not a measurement file (gs-measure writes a .npy with a .json sidecar)")
    meta = read_sidecar(side_path)
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise GSError(f"unsupported measurement format_version {version!r} (this version reads 1)")

    try:
        data = path.read_bytes()
    except OSError as e:
        raise GSError(f"unreadable measurements {path}: {_one_line(e)}") from None
    y = _load_npy(path, data)
    if not isinstance(y, np.ndarray):
        raise GSError(f"not a single .npy array: {path}")
    if y.ndim != 2:
        raise GSError(f"measurements must be 2-D (B, m), got shape {tuple(y.shape)} in {path}")
    if y.dtype != np.float32:
        raise GSError(f"measurements must be float32, got {y.dtype} in {path}")
    if meta.get("shape") != list(y.shape):
        raise GSError(f"measurements of shape {list(y.shape)} do not match sidecar shape {meta.get('shape')!r}")
    if "m" in meta and meta["m"] != y.shape[1]:
        raise GSError(f"measurements have m={y.shape[1]} but the sidecar says m={meta['m']!r}")
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise GSError(f"measurements do not match their sidecar (sha256): {path}")
    if not np.isfinite(y).all():
        raise GSError(f"measurements contain NaN or Inf: {path}")
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise GSError(f"no measurements in {path} (shape {tuple(y.shape)})")
    check_sidecar(meta, y, side_path, trust_sidecar)
    return y, meta


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def _looks_like_image(path: Path) -> bool:
    """Whether the file starts like an image (JPEG, PNG, GIF, BMP, TIFF, WebP), whatever its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return any(head.startswith(m) for m in _IMAGE_MAGIC) and not head.startswith(b"\x93NUMPY")


def expected_residual(sidecar: dict[str, Any], m: int) -> float | None:
    """The norm of the noise the sidecar declares, sqrt(m) sigma: what ||A x - y|| of the true image is expected
    to be (``None`` where the sidecar declares no noise level, 0 for noise-free measurements)."""
    sigma = sidecar.get("sigma")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        return None
    return float(sigma) * math.sqrt(m)
