"""What a path read from the command line or from a file may be: a regular file, opened without blocking; a
path that comes from a file stays inside the folder it belongs to; files the project writes into a folder
(results, locks) are opened without following a symbolic link."""
from __future__ import annotations

from pathlib import Path

from ..errors import GSError


def regular_file(p: Path, what: str, missing: str = "missing") -> Path:
    """``p`` if it is a regular file (a symbolic link to one is followed); a FIFO, a device, a folder or nothing
    there is refused by name, before anything opens it (a FIFO would block a reader forever)."""
    import stat

    try:
        mode = p.stat().st_mode
    except OSError:
        raise GSError(f"{what} {missing}: {p}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise GSError(f"{what} {p} is {kind}")
    return p


def confined(root: Path, rel, what: str = "path", folder: str = "the folder") -> Path:
    """``root / rel`` for a path read from a file (a manifest's, a results row's), refusing absolute paths, drive
    letters, backslashes and anything that resolves (symbolic links followed) outside ``root``."""
    if (not isinstance(rel, str) or not rel or Path(rel).is_absolute() or "\\" in rel
            or (len(rel) > 1 and rel[1] == ":")):  # C:... is absolute (or drive-relative) on Windows
        raise GSError(f"{what} {rel!r} is not a relative path inside {folder}")
    p = (root / rel).resolve()
    try:
        p.relative_to(root.resolve())
    except ValueError:
        raise GSError(f"{what} {rel!r} escapes {folder} {root}") from None
    return p


def open_regular(path: Path, mode: str, what: str):
    """``open(path, mode)`` for a file the project owns in a folder (``a``, ``a+``, ``r+b``, ``r``): a symbolic
    link there is refused, not written through (``O_NOFOLLOW``), and so is anything but a regular file."""
    import os
    import stat

    flags = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "a+": os.O_RDWR | os.O_APPEND | os.O_CREAT,
             "r+b": os.O_RDWR, "r": os.O_RDONLY, "rb": os.O_RDONLY}[mode]
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as e:
        import errno

        if e.errno == errno.ELOOP:
            raise GSError(f"{what} {path} is a symbolic link: refused (it would write through it)") from None
        raise GSError(f"cannot open {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GSError(f"{what} {path} is not a regular file")
    os.set_blocking(fd, True)
    enc = None if "b" in mode else "utf-8"
    return os.fdopen(fd, {"a": "a", "a+": "a+", "r+b": "r+b", "r": "r", "rb": "rb"}[mode], encoding=enc)


#: The ``format`` of the manifests that make a folder a model (or a denoiser) folder: ``generator.manifest.FORMAT``
#: and ``generator.denoiser.FORMAT``, spelled here because io sits below generator (a test checks they agree).
MODEL_FORMATS = ("gs-onnx-manifest", "gs-onnx-denoiser")


def model_folder_at(path: Path) -> Path | None:
    """The model (or denoiser) folder ``path`` is or lies inside, or None: the nearest folder at or above it holding
    a ``manifest.json`` whose ``format`` is a model's. No command writes there (a model folder is verified file by
    file: what is added to it is not the model's)."""
    import json

    p = Path(path).resolve()
    for d in (p, *p.parents):
        m = d / "manifest.json"
        try:
            if not m.is_file() or m.stat().st_size > 4 << 20:
                continue
            fmt = json.loads(m.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, UnicodeDecodeError, AttributeError, RecursionError):
            continue
        if fmt in MODEL_FORMATS:
            return d
    return None
