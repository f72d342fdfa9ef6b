"""What a path read from the command line or from a file may be: a regular file, opened without blocking."""
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
