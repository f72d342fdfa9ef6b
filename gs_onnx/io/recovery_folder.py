"""A recovery folder: the recovery graph, every input it needs as a plain ``.npy`` file, and ``recovery.json``.

Layout (docs/recovery-graph.md)::

    DIR/recovery.onnx          the graph, weights inside
    DIR/inputs/NAME.npy        one file per graph input, named by the input it feeds
    DIR/recovery.json          the interface: inputs and outputs (dtype, shape, meaning), the plan, the sha256 of
                               every file
    DIR/reference.npy          optional: the true image (C, H, W) float32 in [0, 1], for the PSNR only

:func:`write_folder` publishes it whole (staged, then renamed into place); :func:`read_folder` verifies every file
against ``recovery.json`` (sha256, dtype, shape; regular files inside the folder only; never unpickled) before
anything runs.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ..errors import GSError
from .paths import confined, regular_file
from .publish import discard, publish, staging

FORMAT = "gs-onnx-recovery"
FORMAT_VERSION = 1
GRAPH = "recovery.onnx"
#: The ``meaning`` recovery.json gives an operator's table (an ``op_*`` input): the spec says what each type's hold.
OPERATOR_TABLE = "a table of the measurement operator (docs/recovery-graph.md, rule 7: what each type's tables hold)"
INTERFACE = "recovery.json"
REFERENCE = "reference.npy"
#: Files larger than this are refused before they are read (a dense A of 128 px images at m/n 0.5 is 4.8 GB).
MAX_FILE_BYTES = 8 << 30
#: recovery.json larger than this is refused before it is parsed.
MAX_INTERFACE_BYTES = 4 << 20
#: The dtypes a recovery folder's arrays may have.
DTYPES = ("float32", "float64", "int64", "bool")
#: An input's name: it is also a file name, inputs/NAME.npy.
NAME = __import__("re").compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, order="C"), allow_pickle=False)
    return buf.getvalue()


def write_folder(out: Path, model, inputs: dict[str, np.ndarray], info: dict, *, meaning: dict[str, str],
                 outputs: dict[str, tuple[str, tuple]], overwrite: bool = False, sources=(),
                 reference: np.ndarray | None = None) -> dict:
    """Write ``model`` (ModelProto), ``inputs`` and the interface to ``out``; returns the interface written.
    ``info``: model, cut, operator, plan (recorded as given); ``meaning``: a sentence per input and output name;
    ``outputs``: name -> (dtype, symbolic shape); ``sources``: files the folder must not contain or be;
    ``reference``: the true image (C, H, W) in [0, 1], written as reference.npy (for the PSNR; never fed)."""
    out = Path(out)
    tmp = staging(out, overwrite, inputs=sources)
    try:
        graph_bytes = model.SerializeToString()
        (tmp / GRAPH).write_bytes(graph_bytes)
        (tmp / "inputs").mkdir()
        files = {GRAPH: _sha(graph_bytes)}
        spec = {}
        declared = {i.name: i for i in model.graph.input}
        missing = sorted(set(declared) - set(inputs))
        if missing:
            raise GSError(f"no value for the graph input {missing[0]!r}")
        for name in declared:
            a = np.asarray(inputs[name], order="C")
            data = _npy_bytes(a)
            rel = f"inputs/{name}.npy"
            (tmp / rel).write_bytes(data)
            files[rel] = _sha(data)
            spec[name] = {"file": rel, "dtype": str(a.dtype), "shape": list(a.shape),
                          "meaning": meaning.get(name, OPERATOR_TABLE)}
        if reference is not None:
            data = _npy_bytes(np.asarray(reference, np.float32))
            (tmp / REFERENCE).write_bytes(data)
            files[REFERENCE] = _sha(data)
            info = {**info, "reference": REFERENCE}
        interface = {"format": FORMAT, "format_version": FORMAT_VERSION, **info, "graph": GRAPH,
                     "inputs": spec,
                     "outputs": {k: {"dtype": d, "shape": [v if isinstance(v, int) else str(v) for v in shp],
                                     "meaning": meaning.get(k, "")} for k, (d, shp) in outputs.items()},
                     "files": files}
        (tmp / INTERFACE).write_text(json.dumps(interface, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        publish(tmp, out)
    finally:
        discard(tmp)
    return interface


def read_folder(folder: Path) -> tuple[bytes, dict[str, np.ndarray], dict]:
    """(graph bytes, inputs by name, interface) of a recovery folder, every file verified first.

    Raises
    ------
    GSError
        A missing, altered (sha256), reshaped or retyped file, a file that is not a regular file inside the
        folder, an interface that is not a recovery folder's, or an input the graph does not declare.
    """
    from .strictjson import loads

    folder = Path(folder)
    if not folder.is_dir():
        raise GSError(f"{folder} is not a recovery folder (gs-export recovery writes one)")
    from .strictjson import BadJSON

    iface_path = _ruled(1, lambda: regular_file(confined(folder, INTERFACE, "recovery interface", "the recovery folder"),
                                                "recovery interface", "not found"))
    if iface_path.stat().st_size > MAX_INTERFACE_BYTES:
        raise GSError(f"{iface_path} is {iface_path.stat().st_size} bytes, above {MAX_INTERFACE_BYTES >> 20} MB "
                      "(rule 1)")
    try:
        iface = loads(iface_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise GSError(f"{iface_path} is not UTF-8 JSON (rule 1)") from None
    except (BadJSON, ValueError, RecursionError) as e:
        raise GSError(f"{iface_path} is not strict JSON: {e} (rule 1)".splitlines()[0]) from None
    if not isinstance(iface, dict) or iface.get("format") != FORMAT:
        raise GSError(f"{iface_path} is not a recovery interface (format {FORMAT!r}; a measurement sidecar or a "
                      "model manifest is not one) (rule 2)")
    if type(iface.get("format_version")) is not int or iface["format_version"] != FORMAT_VERSION:
        raise GSError(f"{iface_path} has format_version {iface.get('format_version')!r}; this gs-onnx reads "
                      f"{FORMAT_VERSION} (rule 2)")
    files, spec = iface.get("files"), iface.get("inputs")
    if not isinstance(files, dict) or not isinstance(spec, dict) or iface.get("graph") != GRAPH:
        raise GSError(f"{iface_path} lacks its files, inputs or graph (rule 3)")
    for name in spec:
        if not (isinstance(name, str) and NAME.match(name)):
            raise GSError(f"{iface_path}: input name {str(name)[:40]!r} is not [A-Za-z][A-Za-z0-9_]* (rule 3)")
    from .recovery_rules import check_before_reading

    check_before_reading(folder, iface)   # rules 3 and 4: nothing is read that the interface does not vouch for

    graph = _verified(folder, files, GRAPH)
    inputs = {}
    for name, d in spec.items():
        if not isinstance(d, dict) or d.get("file") != f"inputs/{name}.npy":
            raise GSError(f"{iface_path}: input {name!r} must come from inputs/{name}.npy (rule 3)")
        data = _verified(folder, files, d["file"])
        try:
            a = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError) as e:
            raise GSError(f"{folder / d['file']} is not a plain .npy array ({e}) (rule 5)") from None
        if _fortran(data):
            raise GSError(f"{folder / d['file']} is stored in Fortran order; a recovery folder's arrays are C order "
                          "(rule 5)")
        if str(a.dtype) not in DTYPES or str(a.dtype) != d.get("dtype") or list(a.shape) != d.get("shape"):
            raise GSError(f"{folder / d['file']} holds {a.dtype} {list(a.shape)}, but input {name!r} is "
                          f"{d.get('dtype')} {d.get('shape')} (rule 5)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise GSError(f"{folder / d['file']} contains NaN or Inf (rule 5)")
        inputs[name] = a
    for name in ("start", "chunk"):
        if name in inputs and (inputs[name].shape != () or inputs[name].dtype != np.int64):
            raise GSError(f"{folder / f'inputs/{name}.npy'} must hold one int64 number (rule 8)")
    if "start" in inputs and int(inputs["start"]) != 0:
        raise GSError(f"{folder / 'inputs/start.npy'} is {int(inputs['start'])}: a recovery folder starts at 0 (a "
                      f"client continues a run with the state it got back, not from files) (rule 8)")
    if "chunk" in inputs and int(inputs["chunk"]) < 1:
        raise GSError(f"{folder / 'inputs/chunk.npy'} is {int(inputs['chunk'])}: a run takes at least 1 iteration "
                      "(rule 8)")
    from .recovery_rules import check_after_reading

    check_after_reading(folder, graph, inputs, iface)   # rules 6, 7 and 8
    return graph, inputs, iface


def _verified(folder: Path, files: dict, rel: str) -> bytes:
    """The bytes of ``rel`` inside ``folder``, checked against its sha256 in ``files``."""
    if not isinstance(rel, str) or rel not in files:
        raise GSError(f"{folder / INTERFACE} lists no sha256 for {rel!r} (rule 4)")
    p = _ruled(5, lambda: regular_file(confined(folder, rel, "file", "the recovery folder"), "recovery file", "missing"))
    if p.stat().st_size > MAX_FILE_BYTES:
        raise GSError(f"{p} is larger than {MAX_FILE_BYTES >> 30} GiB (rule 5)")
    data = p.read_bytes()
    if _sha(data) != files[rel]:
        raise GSError(f"{p} does not match its sha256 in {INTERFACE}: the file was altered or replaced (rule 5)")
    return data


def _fortran(data: bytes) -> bool:
    """Whether a .npy's header says ``fortran_order: True`` (whatever its shape: a one-row array loads the same
    either way, and a reader that keeps to rule 5 refuses it all the same)."""
    f = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(f)
        header = (np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0)(f)
    except ValueError:
        return False   # np.load has already refused what is not a .npy
    return bool(header[1])


def _ruled(rule: int, fn):
    """``fn()``, its GSError (a path out of the folder, a missing or odd file) tagged with the rule it breaks."""
    try:
        return fn()
    except GSError as e:
        raise GSError(f"{e} (rule {rule})") from None


def read_reference(folder: Path, iface: dict) -> np.ndarray | None:
    """The folder's reference image (C, H, W) float32 in [0, 1], verified, or None when it has none."""
    rel = iface.get("reference")
    if rel is None:
        return None
    if rel != REFERENCE:
        raise GSError(f"{Path(folder) / INTERFACE}: reference must be {REFERENCE!r}, not {rel!r} (rule 3)")
    path = Path(folder) / rel
    data = _verified(Path(folder), iface.get("files") or {}, rel)
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as e:
        raise GSError(f"{path} is not a plain .npy array ({e}) (rule 5)") from None
    if _fortran(data):
        raise GSError(f"{path} is stored in Fortran order; a recovery folder's arrays are C order (rule 5)")
    shape = list(iface.get("image_shape") or [])
    if a.dtype != np.float32 or list(a.shape) != shape:
        raise GSError(f"{path} holds {a.dtype} {list(a.shape)}, the image is float32 {shape} (rule 10)")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise GSError(f"{path} has values outside [0, 1] (or NaN) (rule 10)")
    return a


def check_against_graph(session_inputs, inputs: dict[str, np.ndarray]) -> None:
    """Refuse inputs whose names, dtypes or fixed dimensions differ from the graph's declared inputs (an
    interface edited consistently with its files still meets the graph)."""
    types = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(bool)": "bool"}
    declared = {i.name: i for i in session_inputs}
    for name in sorted(set(declared) | set(inputs)):
        if name not in inputs:
            raise GSError(f"the recovery graph needs the input {name!r}, which the folder does not give")
        if name not in declared:
            raise GSError(f"the folder gives {name!r}, which is not an input of the recovery graph")
        want = types.get(declared[name].type, declared[name].type)
        a = inputs[name]
        if str(a.dtype) != want:
            raise GSError(f"input {name!r} is {a.dtype}, the recovery graph takes {want}")
        shape = declared[name].shape
        if len(shape) != a.ndim or any(isinstance(d, int) and d != s for d, s in zip(shape, a.shape)):
            raise GSError(f"input {name!r} has shape {list(a.shape)}, the recovery graph takes {list(shape)}")
