"""Running tasks: in this process, on a local pool of worker processes, or on a Ray cluster.

Whatever runs the tasks, only the driver (this process) writes the results file and the files rows
carry (sample grids): rows come back as values, are appended as they arrive, and a rerun skips them.
"""
from __future__ import annotations

import base64
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Callable, Iterable

from ..errors import GSError
from ..io.progress import Progress
from .results import ResultsFile
from .task import Task, run_task

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _publish(results: ResultsFile, task: Task, row: dict[str, Any]) -> None:
    """Write the row's files (``_files``: {relative path: base64 bytes}) under the results folder, then
    append the row with their paths under ``files``."""
    files = row.pop("_files", None) or {}
    names = []
    for rel, b64 in files.items():
        p = (results.folder / rel).resolve()
        if results.folder.resolve() not in p.parents:
            raise GSError(f"a task tried to write outside the results folder: {rel}")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".part")
        tmp.write_bytes(base64.b64decode(b64))
        os.replace(tmp, p)
        names.append(rel)
    if names:
        row["files"] = names
    from .._version import provenance

    row.setdefault("provenance", provenance(row.get("provider")))
    results.append(task, row)


def _die_with_parent() -> None:
    """Pool worker initializer: end this worker when the driver ends, even by ``kill -9`` (Linux:
    PR_SET_PDEATHSIG; elsewhere a thread that watches the parent's pid)."""
    import signal
    import threading

    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)

    def watch():
        import time

        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _stop_now(ex: ProcessPoolExecutor) -> None:
    """End a pool at once (Ctrl-C, a task's error): the queued tasks dropped, the running ones killed where they
    are (a worker inside ONNX Runtime or BLAS would not see KeyboardInterrupt until its call returns, and a plain
    ``shutdown`` would wait for every submitted task); their rows were never published, a rerun runs them."""
    procs = list((getattr(ex, "_processes", None) or {}).values())  # the executor keeps no public handle on them
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)


def _worker_run(task_dict: dict, models_dir: str | None, device: str, threads: int) -> dict:
    return run_task(Task.from_dict(task_dict), models_dir=models_dir, device=device, threads=threads)


def run_local(tasks: list[Task], results: ResultsFile, *, workers: int = 1, threads: int = 0,
              device: str = "cpu", models_dir: str | None = None, progress: Progress | None = None) -> int:
    """Run ``tasks`` with ``workers`` processes (1: in this process); returns the number of rows written."""
    done = 0

    def tick(task: Task) -> None:
        if progress:
            progress.update(done / max(1, len(tasks)), f"{done}/{len(tasks)} {task.preset} {task.model} "
                                                       f"{task.method} m/n={task.ratio:g}")

    if workers <= 1:
        for t in tasks:
            tick(t)
            _publish(results, t, run_task(t, models_dir=models_dir, device=device, threads=threads))
            done += 1
        return done
    per = threads or 1
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: str(per) for k in _THREAD_VARS})  # inherited by the spawned workers only
    try:
        ex = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_die_with_parent)
        try:
            queue = list(tasks)
            running: dict[Any, Task] = {}
            while queue or running:
                while queue and len(running) < 2 * workers:  # keep order: neighbours share model and A
                    t = queue.pop(0)
                    running[ex.submit(_worker_run, t.as_dict(), models_dir, device, per)] = t
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    t = running.pop(f)
                    row = f.result()  # a task's GSError propagates: finished rows stay, a rerun resumes
                    _publish(results, t, row)
                    done += 1
                    tick(t)
        except BaseException:
            _stop_now(ex)
            raise
        ex.shutdown(wait=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return done


def _ray():
    try:
        import ray
    except ImportError:
        raise GSError("--ray needs Ray: pip install 'gs-onnx[ray]'") from None
    return ray


def run_ray(tasks: list[Task], results: ResultsFile, *, address: str, threads: int = 1, device: str = "cpu",
            models_dir: str | None = None, progress: Progress | None = None,
            init_kwargs: dict[str, Any] | None = None) -> int:
    """Run ``tasks`` as Ray tasks (``num_cpus = threads``, one GPU each with ``device='cuda'``).

    ``address``: ``local`` starts a Ray instance on this machine for the run; ``auto`` or ``HOST:PORT``
    joins a running cluster (every node needs gs-onnx and the models installed, and the images at the same
    paths). The driver appends each row as its task finishes.
    """
    ray = _ray()
    started = False
    if not ray.is_initialized():
        kw = dict(init_kwargs or {})
        kw.setdefault("include_dashboard", False)
        kw.setdefault("log_to_driver", False)
        try:
            ray.init(address=None if address == "local" else address, **kw)
        except Exception as e:  # noqa: BLE001 - Ray raises many types (ConnectionError, RuntimeError, ...)
            raise GSError(f"cannot start or join Ray at {address!r}: {str(e).splitlines()[0]}") from None
        started = True
    per = max(1, threads or 1)
    remote = ray.remote(num_cpus=per, num_gpus=1 if device == "cuda" else 0, max_retries=1)(_worker_run)
    done = 0
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        queue = list(tasks)
        running: dict[Any, Task] = {}
        while queue or running:
            while queue and len(running) < 2 * max(1, cpus // per):
                t = queue.pop(0)
                running[remote.remote(t.as_dict(), models_dir, device, per)] = t
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                t = running.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a task's error arrives wrapped by Ray
                    cause = getattr(e, "cause", None) or e
                    raise GSError(f"task failed on Ray: {str(cause).splitlines()[0]}") from None
                _publish(results, t, row)
                done += 1
                if progress:
                    progress.update(done / len(tasks), f"{done}/{len(tasks)} on Ray")
    finally:
        if started:
            ray.shutdown()
    return done


def same_models(tasks: list[Task], results: ResultsFile, models_dir: str | None) -> None:
    """Refuse to add rows made with another model of the same name (another ``--models-dir``, a re-exported
    model) or another image under the same data-set index (another ``--data-root``) to a results folder: its
    tasks would be taken as done, or pooled with the old ones in one condition of the summary."""
    from .cache import manifest_for
    from ..generator.manifest import model_digest

    seen, images = {}, {}
    for r in results.rows():
        if r.get("model_sha256") and r.get("model"):
            seen.setdefault(r["model"], r["model_sha256"])
        if r.get("dataset") and r.get("image") and r.get("index") is not None:
            images.setdefault((r["dataset"], r["index"]), r["image"])
    for t in tasks:
        old = images.get((t.dataset, t.index))
        if old is not None and old != t.image:
            raise GSError(f"{results.path} holds results of another image as {t.dataset} #{t.index} ({old}; now "
                          f"{t.image}): another data root? write to another -o folder")
    for name in sorted({t.model for t in tasks} & set(seen)):
        now = model_digest(manifest_for(name, models_dir))
        if now != seen[name]:
            raise GSError(f"{results.path} holds results of another model named {name} (manifest sha256 "
                          f"{seen[name][:12]}..., this one {now[:12]}...): write to another -o folder")


def execute(tasks: Iterable[Task], results: ResultsFile, *, workers: int = 1, threads: int = 0,
            device: str = "cpu", models_dir: str | None = None, ray: str | None = None,
            progress: Progress | None = None, log: Callable[[str], None] | None = None) -> int:
    """Run the tasks not yet in ``results`` (its lock held, the whole file checked first); returns how many
    ran."""
    results.lock()
    tasks = list(tasks)
    same_models(tasks, results, models_dir)
    todo = results.pending(tasks)
    if log:
        log(f"{len(todo)} task(s) to run, {len(results.done())} row(s) already in {results.path}")
    if not todo:
        return 0
    if ray:
        return run_ray(todo, results, address=ray, threads=threads, device=device, models_dir=models_dir,
                       progress=progress)
    return run_local(todo, results, workers=workers, threads=threads, device=device, models_dir=models_dir,
                     progress=progress)
