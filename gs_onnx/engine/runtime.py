"""Execution providers: choosing them, creating sessions, and telling which device really runs.

One session factory (:func:`create_session`) for every ONNX Runtime session the runtime opens. Devices are
a registry (:data:`DEVICES`): a name maps to the execution providers it asks for and to the OrtValue device
name that keeps tensors there.

Device truth: onnxruntime-gpu lists ``CUDAExecutionProvider`` even where CUDA cannot load and then silently
runs on the CPU; with both ``onnxruntime`` and ``onnxruntime-gpu`` installed the CPU package hides the CUDA
provider. :func:`create_session` checks ``session.get_providers()`` after creation and fails in one line when
``cuda`` was asked for and does not run; :func:`placement` reports how many nodes each provider runs.

WebGPU (``--device webgpu``) is ONNX Runtime's plugin execution provider from the ``onnxruntime-ep-webgpu`` package
(``pip install 'gs-onnx[webgpu]'``): the plugin library is registered with ONNX Runtime and the session is given the
WebGPU devices ONNX Runtime lists. The plugin lists hardware GPUs only (through Dawn: Vulkan, Metal, D3D12); on a
machine without one ONNX Runtime lists no WebGPU device, and ``--device webgpu`` is refused in one line saying so.
ONNX Runtime's own log lines and Python warnings never reach the terminal: what matters is reported here.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from importlib import metadata
from pathlib import Path
from typing import Literal

from ..errors import GSError

Device = Literal["auto", "cpu", "cuda", "webgpu"]
CPU, CUDA, WEBGPU = "CPUExecutionProvider", "CUDAExecutionProvider", "WebGpuExecutionProvider"


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """A device the runtime can run on: the providers it asks ONNX Runtime for and where its tensors live."""

    name: str
    providers: tuple[str, ...]
    ort_device: str          #: OrtValue device name ("cpu", "cuda")
    help: str


#: Devices by name; ``auto`` picks the first one whose provider is available, in this order.
DEVICES: dict[str, DeviceSpec] = {
    "cpu": DeviceSpec("cpu", (CPU,), "cpu", "ONNX Runtime's CPU provider"),
    "cuda": DeviceSpec("cuda", (CUDA, CPU), "cuda", "NVIDIA GPU through onnxruntime-gpu's CUDA provider"),
    "webgpu": DeviceSpec("webgpu", (WEBGPU, CPU), "cpu", "a GPU through WebGPU (Dawn), ONNX Runtime's plugin provider "
                         "from onnxruntime-ep-webgpu; tensors are fed from the host"),
}
#: What ``--device`` accepts.
DEVICE_CHOICES = ("auto",) + tuple(DEVICES)


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise GSError("onnxruntime is not installed: pip install 'gs-onnx[cpu]' (or [gpu] for CUDA)") from None
    if not getattr(_ort, "_quiet", False):
        ort.set_default_logger_severity(4)  # ORT's own warnings and errors: this module reports what matters
        _ort._quiet = True
    return ort


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def session_options(threads: int = 0, record_placement: bool = False):
    """Session options for the inner loop: no spinning (2-core machines), full graph optimisation."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if record_placement:
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    so.log_severity_level = 4
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


def resolve_device(device: str) -> DeviceSpec:
    """The device ``device`` names (``auto``: CUDA where its provider is listed, else the CPU)."""
    if device == "auto":
        return DEVICES["cuda"] if CUDA in available_providers() else DEVICES["cpu"]
    spec = DEVICES.get(device)
    if spec is None:
        raise GSError(f"unknown device {device!r}: use {', '.join(DEVICE_CHOICES)}")
    if device == "webgpu" and not webgpu_devices():
        raise GSError("--device webgpu: ONNX Runtime lists no WebGPU device on this machine (the plugin lists "
                      "hardware GPUs only); use --device cpu")
    if device == "cuda":
        avail = available_providers()
        if CUDA not in avail:
            if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
                raise GSError("--device cuda: both onnxruntime and onnxruntime-gpu are installed and the CPU "
                              "package hides CUDA: pip uninstall -y onnxruntime onnxruntime-gpu && "
                              "pip install 'gs-onnx[gpu]'")
            raise GSError("--device cuda: this onnxruntime has no CUDAExecutionProvider "
                          "(install onnxruntime-gpu: pip install 'gs-onnx[gpu]')")
    return spec


@functools.lru_cache(maxsize=1)
def webgpu_devices() -> tuple:
    """The WebGPU devices ONNX Runtime lists once the onnxruntime-ep-webgpu plugin is registered (GSError where the
    plugin is not installed or cannot be registered). Registered and listed once per process."""
    ort = _ort()
    try:
        import onnxruntime_ep_webgpu as plugin
    except ImportError:
        raise GSError("--device webgpu needs the WebGPU plugin provider: pip install 'gs-onnx[webgpu]' "
                      "(onnxruntime-ep-webgpu)") from None
    if not hasattr(ort, "register_execution_provider_library"):
        raise GSError(f"--device webgpu: onnxruntime {ort.__version__} cannot load plugin providers (1.23 or later)")
    try:
        ort.register_execution_provider_library(plugin.get_ep_name(), plugin.get_library_path())
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        if "already registered" not in str(e):
            raise GSError(f"--device webgpu: the WebGPU plugin did not register: {str(e).splitlines()[0]}") from None
    return tuple(d for d in ort.get_ep_devices() if d.ep_name == WEBGPU)


def requested_providers(device: Device) -> list[str]:
    return list(resolve_device(device).providers)


def create_session(path: str | Path | bytes, device: Device = "auto", threads: int = 0, *,
                   provider_options: dict | None = None, options=None):
    """An InferenceSession on ``device`` for a graph file (or serialized model bytes).

    ``provider_options`` go to the first (non-CPU) provider, e.g. ``{"enable_cuda_graph": "1"}``;
    ``options`` replaces :func:`session_options`. Raises GSError if ``cuda`` was asked for but CUDA is not
    active after creation.
    """
    ort = _ort()
    spec = resolve_device(device)
    provs: list = list(spec.providers)
    if CUDA in provs and hasattr(ort, "preload_dlls"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ort.preload_dlls()
        except Exception:  # noqa: BLE001 - preloading is best effort; the provider check below decides
            pass
    if provider_options and provs[0] != CPU:
        provs[0] = (provs[0], dict(provider_options))
    so = options if options is not None else session_options(threads, record_placement=True)
    if spec.name == "webgpu":   # a plugin provider: given by its devices, not by name
        so.add_provider_for_devices(list(webgpu_devices()), dict(provider_options or {}))
        provs = None
    try:
        src = path if isinstance(path, bytes) else str(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sess = ort.InferenceSession(src, so, providers=provs) if provs else ort.InferenceSession(src, so)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        what = "(built in memory)" if isinstance(path, bytes) else str(path)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GSError(f"cannot load ONNX graph {what}: {msg}") from None
    active = sess.get_providers()
    if spec.name == "cuda" and CUDA not in active:
        raise GSError("--device cuda: CUDAExecutionProvider failed to load (CUDA/cuDNN libraries missing? "
                      "pip install 'gs-onnx[gpu]' brings them); use --device cpu or fix the CUDA installation")
    if spec.name == "webgpu" and WEBGPU not in active:
        raise GSError("--device webgpu: the WebGPU provider did not load for this graph; use --device cpu")
    return sess


def interruptible_run(sess, outputs: list[str], feed: dict):
    """``sess.run(outputs, feed)`` that Ctrl-C ends: the run goes on in a worker thread while this one waits, and a
    KeyboardInterrupt sets ONNX Runtime's ``RunOptions.terminate`` (checked between nodes, inside a ``Loop``'s body
    too), waits for the run to stop, and propagates. A run in the main thread holds the interrupt until it
    returns, which for a graph whose loop never ends is never (docs/threat-model.md, recovery folders)."""
    import threading

    opts = _ort().RunOptions()
    box: dict = {}
    done = threading.Event()   # not Thread.join: an interrupted join can leave the thread looking finished

    def work():
        try:
            box["out"] = sess.run(outputs, feed, opts)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box["err"] = e
        finally:
            done.set()

    threading.Thread(target=work, name="gs-onnx session run", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        opts.terminate = True
        done.wait(30)
        raise
    if "err" in box:
        raise box["err"]
    return box["out"]


def active_provider(sess) -> str:
    """The provider that runs the session's nodes first (CUDA when it loaded, else CPU)."""
    return sess.get_providers()[0]


def placement(sess) -> dict[str, int]:
    """{provider: number of nodes it runs} for a session made by :func:`create_session` (ONNX Runtime >= 1.32
    records it); ``{first provider: -1}`` where this ONNX Runtime cannot tell."""
    try:
        info = sess.get_provider_graph_assignment_info()
    except Exception:  # noqa: BLE001 - older ONNX Runtime, or recording off
        info = None
    if not info:
        return {active_provider(sess): -1}
    out: dict[str, int] = {}
    for sg in info:
        out[sg.ep_name] = out.get(sg.ep_name, 0) + len(sg.get_nodes())
    return out


def describe_placement(placements: list[dict[str, int]]) -> str:
    """One line for a report: the providers that ran a set of sessions, with their node counts."""
    total: dict[str, int] = {}
    unknown = False
    for p in placements:
        for k, v in p.items():
            if v < 0:
                unknown = True
                total.setdefault(k, 0)
            else:
                total[k] = total.get(k, 0) + v
    if len(total) == 1:
        return next(iter(total))
    if unknown:
        return " + ".join(sorted(total))
    return ", ".join(f"{k} ({v} nodes)" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))
