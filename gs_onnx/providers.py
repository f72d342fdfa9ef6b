"""Execution providers: choosing them, creating sessions, and telling which device really runs.

onnxruntime-gpu lists ``CUDAExecutionProvider`` even where CUDA cannot load and then silently runs on
the CPU; :func:`create_session` therefore checks ``session.get_providers()`` after creation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import GSError

Device = Literal["auto", "cpu", "cuda"]
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise GSError("onnxruntime is not installed: pip install 'gs-onnx[cpu]' (or [gpu] for CUDA)") from None
    return ort


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def session_options(threads: int = 0):
    """Session options for the inner loop: no spinning (2-core machines), full graph optimisation."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


def requested_providers(device: Device) -> list[str]:
    avail = available_providers()
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in avail:
            raise GSError("--device cuda: this onnxruntime has no CUDAExecutionProvider "
                          "(install onnxruntime-gpu: pip install 'gs-onnx[gpu]')")
        return [CUDA, CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in avail else [CPU]
    raise GSError(f"unknown device {device!r}: use auto, cpu or cuda")


def create_session(path: str | Path | bytes, device: Device = "auto", threads: int = 0):
    """An InferenceSession on ``device`` for a graph file (or serialized model bytes); GSError if ``cuda``
    was asked for but CUDA is not active."""
    ort = _ort()
    provs = requested_providers(device)
    if CUDA in provs and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - preloading is best effort; the provider check below decides
            pass
    try:
        src = path if isinstance(path, bytes) else str(path)
        sess = ort.InferenceSession(src, session_options(threads), providers=provs)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        what = "(merged in memory)" if isinstance(path, bytes) else str(path)
        raise GSError(f"cannot load ONNX graph {what}: {str(e).splitlines()[0]}") from None
    active = sess.get_providers()
    if device == "cuda" and CUDA not in active:
        raise GSError("--device cuda: CUDAExecutionProvider failed to load (CUDA/cuDNN libraries missing?); "
                      "use --device cpu or fix the CUDA installation")
    return sess


def active_provider(sess) -> str:
    """The provider that runs the session's nodes first (CUDA when it loaded, else CPU)."""
    return sess.get_providers()[0]
