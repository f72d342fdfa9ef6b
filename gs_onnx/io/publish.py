"""Publishing results: the one way every command writes its output, so that no reader ever sees a half-written
file and a failure leaves nothing behind.

* :func:`staging` refuses an output that holds one of the run's inputs or lies inside one, and, with
  ``overwrite``, a folder that gs-onnx did not write (it carries no :data:`MARK`: a model folder, a data folder,
  a home folder typed by mistake are never replaced); it claims an output folder (an exclusive lock beside it, held until :func:`discard`, which
  every run calls at its end: a second run on the same output is refused, not silently replaced), makes a
  temp folder beside it (same filesystem, so the final rename is atomic) and removes the staging folders of
  earlier runs that were killed (their process is gone).
* :func:`publish` moves a finished staging folder into place, whole: a rename where it can; where the output
  folder is a mount point (EXDEV/EBUSY), the files are copied in, each through a temp name and a rename inside
  the target filesystem, and the files of the earlier run are removed.
* :func:`write_atomic` writes files next to their targets and renames them into place.

Every I/O error (read-only folder or parent, full disk, a file where a folder should be) becomes a GSError
naming the path: one line, no traceback.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import GSError

_PREFIX = ".gs-staging."
#: The file every published output folder carries: ``--overwrite`` replaces only a folder that has it.
MARK = ".gs-output"


def _io_error(what: str, path, e: OSError) -> GSError:
    return GSError(f"cannot {what} {path}: {e.strerror or e}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_prefix() -> str:
    """The prefix of this process's staging folders (``tempfile.mkdtemp(prefix=...)``): :func:`clean_stale` removes
    them once the process is gone."""
    return f"{_PREFIX}{os.getpid()}."


def clean_stale(parent: Path) -> None:
    """Remove staging folders in ``parent`` left by runs whose process no longer exists (``kill -9``)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for p in entries:
        if not p.name.startswith(_PREFIX) or not p.is_dir():
            continue
        try:
            pid = int(p.name[len(_PREFIX):].split(".")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


#: staging folder -> the open claim file of its output (see :func:`staging`)
_CLAIMS: dict[Path, object] = {}


def _claim(parent: Path, out: Path):
    """An exclusive, non-blocking lock on ``parent/.gs-claim.<out name>``, released when closed or when the
    process ends: the claim on ``out`` for the whole run."""
    import fcntl

    from .paths import open_regular

    path = parent / f".gs-claim.{out.name}"
    f = open_regular(path, "a+", "output claim")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:  # its owner finished and removed it meanwhile
            raise OSError(errno.EAGAIN, "claim replaced")
    except OSError:
        f.close()
        raise GSError(f"another run is writing to {out}: wait for it, or -o another folder") from None
    f.claim_path = path
    return f


def staging(out: Path, overwrite: bool = False, inputs=()) -> Path:
    """A fresh staging folder beside the output folder ``out`` (created with its parents), with ``out``
    claimed for this run until :func:`discard` (after :func:`publish`, or on failure).

    An existing non-empty ``out`` is refused unless ``overwrite``, and even then unless it carries :data:`MARK`
    (only a folder gs-onnx wrote is replaced); a file at ``out`` is refused, and so is an ``out`` that is, holds or
    lies inside one of ``inputs`` (replacing it would delete them) or lies inside a model folder; a second run
    claiming the same ``out`` is refused while this one runs.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GSError(f"output exists and is not a folder: {out}")
    target = out.resolve()
    for p in inputs:
        q = Path(p).resolve()
        if q == target or target in q.parents:
            raise GSError(f"output folder {out} holds the input {p}: replacing it would delete it; -o another "
                          "folder")
        if q in target.parents:
            raise GSError(f"output folder {out} lies inside the input {p}: writing there would change it; -o a "
                          "folder outside it")
    from .paths import model_folder_at

    home = model_folder_at(target)
    if home is not None:
        raise GSError(f"output folder {out} {'is' if home == target else 'lies inside'} the model folder {home}: "
                      "nothing is written into a model; -o another folder")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _io_error("create the folder", parent, e) from None
    claim = _claim(parent, target)  # first the claim, then the look: a run that finished meanwhile is seen
    try:
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                raise GSError(f"output folder {out} exists and is not empty: pass --overwrite to replace it, or -o "
                              "another folder")
            if not (out / MARK).is_file():
                raise GSError(f"output folder {out} was not written by gs-onnx (it has no {MARK}): --overwrite "
                              "replaces only results folders; remove it yourself, or -o another folder")
    except OSError as e:
        _release(claim)
        raise _io_error("read", out, e) from None
    except GSError:
        _release(claim)
        raise
    clean_stale(parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}.", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())   # it becomes the output folder: mkdtemp's 0700 would make it owner-only
    except OSError as e:
        _release(claim)
        raise _io_error("write in", parent, e) from None
    _CLAIMS[tmp] = claim
    return tmp


class claimed:
    """``with claimed(path):``: ``path`` (a file a command writes, gs-measure's measurements) claimed for this run,
    as :func:`staging` claims a folder: a second run writing the same path is refused while this one runs."""

    def __init__(self, path: Path):
        self.path = Path(path).resolve()

    def __enter__(self):
        self.claim = _claim(self.path.parent, self.path)
        return self

    def __exit__(self, *exc):
        _release(self.claim)
        return False


def discard(tmp: Path) -> None:
    """Remove a staging folder (if still there) and release its output's claim."""
    shutil.rmtree(tmp, ignore_errors=True)
    claim = _CLAIMS.pop(Path(tmp), None)
    if claim is not None:
        _release(claim)


def _release(claim) -> None:
    """Remove the claim file, then unlock it (a run that opened it before fails its inode check)."""
    try:
        os.unlink(claim.claim_path)
    except OSError:
        pass
    claim.close()


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    m = os.umask(0)
    os.umask(m)
    return m


def publish(tmp: Path, out: Path) -> None:
    """Replace the output folder ``out`` by the finished staging folder ``tmp``, whole (no stale files)."""
    tmp, out = Path(tmp), Path(out)
    try:
        (tmp / MARK).write_text("a results folder written by gs-onnx: --overwrite may replace it\n")
    except OSError as e:
        raise _io_error("write in", tmp, e) from None
    try:
        if out.exists() and os.path.ismount(out):
            raise OSError(errno.EXDEV, "mount point")
        old = None
        if out.exists():
            old = out.with_name(f"{_PREFIX}{os.getpid()}.old-{out.name}")
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old is not None:
                os.replace(old, out)  # put the earlier results back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EBUSY, errno.ENOTEMPTY, errno.EEXIST):
            raise _io_error("publish the results to", out, e) from None
        _copy_into(tmp, out)


def _copy_into(tmp: Path, out: Path) -> None:
    """Publish into a folder that cannot be renamed (a mount point): copy every file in through a temp name in
    the target filesystem and a rename, then remove what the earlier run left there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        new = set()
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == "report.json"):  # the report last
            part = out / f".{f.name}.part-{os.getpid()}"
            shutil.copyfile(f, part)
            with open(part, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(part, out / f.name)
            new.add(f.name)
        for p in out.iterdir():
            if p.name not in new:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    except OSError as e:
        raise _io_error("publish the results to", out, e) from None
    shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(targets: list[tuple[Path, bytes]]) -> None:
    """Write every file to a temp file in its folder, fsync, then rename them into place in order."""
    temps: list[tuple[str, Path]] = []
    umask = _umask()
    current = None
    try:
        for path, data in targets:
            current = path
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append((tmp, path))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make the results owner-only
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            current = path
            os.replace(tmp, path)
    except OSError as e:
        raise _io_error("write", current, e) from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
