"""The installed version of gs-onnx (from the package metadata; the source tree's pyproject otherwise)."""
from __future__ import annotations

import re
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
