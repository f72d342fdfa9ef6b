"""The installed version of gs-onnx (from the package metadata; the source tree's pyproject otherwise) and the
provenance every output file records (:func:`provenance`)."""
from __future__ import annotations

import datetime
import os
import re
import sys
from importlib import metadata
from pathlib import Path


def _version() -> str:
    try:
        return metadata.version("gs-onnx")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            m = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
        except OSError:
            m = None
        return m.group(1) if m else "0+unknown"


__version__ = _version()


def provenance(provider: str | None = None) -> dict:
    """What every output file records: gs-onnx and onnxruntime versions, the provider that ran, a UTC
    timestamp and the command line."""
    ort = None
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            ort = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            pass
    out = {"gs_onnx": __version__, "onnxruntime": ort,
           "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
    if provider is not None:
        out["provider"] = provider
    return out
