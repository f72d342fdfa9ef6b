"""The results file of an experiment: one JSON object per line (``results.jsonl``), appended and flushed to
disk as each task finishes, so that an interrupted run loses at most the tasks in flight.

Only the driver writes it (local pool or Ray). A rerun reads it back and skips every task whose
:meth:`Task.key` is already there. A last line cut short by a crash is ignored on reading and trimmed
before the next append.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import GSError
from ..io import strictjson
from ..io.paths import open_regular
from .task import Task

RESULTS = "results.jsonl"


def _clean(v: Any) -> Any:
    """JSON-safe values: numpy scalars to Python, NaN/inf to None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")):
        return None
    return v


#: Fields of a results row the summaries compute with (numbers or null) and group by (strings or null).
NUMBER_FIELDS = ("psnr", "gs_psnr", "ssim", "seconds", "seconds_all_restarts", "seam", "seam_truth", "ratio", "m", "n",
                 "measurement_error", "objective", "evaluations", "index", "cut", "restart", "free_parameters",
                 "sigma", "skip_prior", "lam", "gamma", "iterations")
STRING_FIELDS = ("key", "model", "method", "dataset", "preset", "variant", "setting", "operator")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bad_field(row: dict) -> str | None:
    """What is wrong with the types of a results row (a PSNR that is a string would surface as a numpy
    TypeError in a summary), or None."""
    for k in NUMBER_FIELDS:
        if row.get(k) is not None and not _is_number(row[k]):
            return f"{k} must be a number, got {type(row[k]).__name__} {str(row[k])[:40]!r}"
    for k in STRING_FIELDS:
        if row.get(k) is not None and not isinstance(row[k], str):
            return f"{k} must be a string, got {type(row[k]).__name__}"
    files = row.get("files")
    if files is not None and not (isinstance(files, list) and all(
            isinstance(f, str) and f and not f.startswith(("/", "\\")) and ".." not in f.replace("\\", "/").split("/")
            and ":" not in f for f in files)):
        return "files must be a list of paths relative to the results folder"
    trace = row.get("trace")
    if trace is not None:
        if not isinstance(trace, dict) or not all(
                isinstance(v, list) and all(x is None or _is_number(x) for x in v) for v in trace.values()):
            return "trace must map names to lists of numbers"
    return None


#: How much of a results file's end :meth:`ResultsFile._trim_torn_tail` reads.
TAIL_BYTES = 4 << 20


class ResultsFile:
    """Append-only rows of one experiment folder.

    Parameters
    ----------
    folder : the experiment's output folder (created if missing, unless ``create`` is false: a dry run);
        rows go to ``folder/results.jsonl``
    """

    def __init__(self, folder: str | Path, create: bool = True):
        from ..io.paths import model_folder_at

        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise GSError(f"results folder {self.folder} is a file")
        home = model_folder_at(self.folder)
        if home is not None:
            raise GSError(f"results folder {self.folder} {'is' if home == self.folder.resolve() else 'lies inside'} "
                          f"the model folder {home}: nothing is written into a model; -o another folder")
        try:
            if create:
                self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GSError(f"cannot create results folder {self.folder}: {e.strerror}") from None
        self.path = self.folder / RESULTS
        if self.path.exists() and not self.path.is_file():
            raise GSError(f"{self.path} is not a file")
        self._lock = None

    def lock(self) -> "ResultsFile":
        """Take the folder's write lock (``results.jsonl.lock``, released when the process ends, however it
        ends): a second driver on the same folder is refused instead of writing every row twice."""
        import fcntl

        if self._lock is not None:
            return self
        lock_path = self.folder / (RESULTS + ".lock")
        f = open_regular(lock_path, "a+", "lock file")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise GSError(f"another gs-experiment ({holder}) is writing to {self.folder}: wait for it or use "
                          "another -o folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._lock = f
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row, in file order (a torn last line is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        try:
            with open_regular(self.path, "rb", "results file") as f:
                lines = f.read().decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise GSError(f"{self.path} is not a text results file") from None
        except OSError as e:
            raise GSError(f"cannot read {self.path}: {e.strerror or e}") from None
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = strictjson.loads(line)
            except strictjson.BadJSON as e:
                raise GSError(f"{self.path}: line {i + 1}: {e} (edit or remove it)") from None
            except json.JSONDecodeError:
                if i == last:  # only the last line may be torn (the next append cuts it: _trim_torn_tail)
                    continue
                raise GSError(f"{self.path}: line {i + 1} is not JSON (edit or remove it)") from None
            if not isinstance(row, dict) or "key" not in row:
                raise GSError(f"{self.path}: line {i + 1} is not a results row")
            bad = _bad_field(row)
            if bad:
                raise GSError(f"{self.path}: line {i + 1}: {bad} (edit or remove it)")
            out.append(row)
        return out

    def done(self) -> set[str]:
        """Keys of the tasks already in the file."""
        return {r["key"] for r in self.rows()}

    def _trim_torn_tail(self) -> None:
        """Repair the end of the file as :meth:`rows` reads it, before appending: a last non-empty line that is
        not JSON (a crash mid-write, with or without a newline after it) is cut; a complete last row without its
        newline gets one. Reads only the last :data:`TAIL_BYTES` (a row is far smaller)."""
        if not self.path.is_file():
            return
        with open_regular(self.path, "r+b", "results file") as f:
            size = f.seek(0, os.SEEK_END)
            base = max(0, size - TAIL_BYTES)
            f.seek(base)
            tail = f.read()
            body = tail.rstrip()
            if not body:
                return
            nl = body.rfind(b"\n")
            if nl < 0 and base > 0:
                raise GSError(f"{self.path}: its last line is over {TAIL_BYTES >> 20} MiB, not a results row (edit "
                              "or remove it)")
            line = body[nl + 1:]
            try:
                strictjson.loads(line.decode("utf-8"))
                whole = nl >= 0 or base == 0
            except (ValueError, UnicodeDecodeError):
                whole = False
            if not whole:
                f.truncate(base + nl + 1)
            elif not tail.endswith(b"\n"):
                f.write(b"\n")

    def append(self, task: Task, row: dict[str, Any]) -> None:
        """Write one finished task's row (with its key) and flush it to disk."""
        row = _clean({**row, "key": task.key()})
        line = json.dumps(row, sort_keys=True, allow_nan=False) + "\n"
        self._trim_torn_tail()
        with open_regular(self.path, "a", "results file") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def pending(self, tasks: Iterable[Task]) -> list[Task]:
        """The tasks not yet in the file, in order, without duplicates."""
        done, out, seen = self.done(), [], set()
        for t in tasks:
            k = t.key()
            if k not in done and k not in seen:
                seen.add(k)
                out.append(t)
        return out
