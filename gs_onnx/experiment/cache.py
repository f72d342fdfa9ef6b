"""What a worker keeps between tasks: the last models, operators, cut generators and solvers (a worker runs
many tasks of one model and ratio in a row; re-reading graphs and re-drawing a dense A costs 18 s at 128 px,
m/n = 0.16). Tasks (:mod:`.task`) and sample grids (:mod:`.samples`) share it.
"""
from __future__ import annotations

from typing import Any

_CACHE: dict[str, list[tuple[Any, Any]]] = {}
_CAPACITY = {"operator": 1, "generator": 2, "manifest": 4, "solver": 4}


def cached(kind: str, key: Any, make):
    entries = _CACHE.setdefault(kind, [])
    for i, (k, v) in enumerate(entries):
        if k == key:
            entries.append(entries.pop(i))  # most recently used last
            return v
    while len(entries) >= _CAPACITY[kind]:
        entries.pop(0)  # free the old value before building the new one (a dense A can be GBs)
    value = make()
    entries.append((key, value))
    return value


def manifest_for(model: str, models_dir: str | None):
    from ..generator import registry

    return cached("manifest", (model, models_dir), lambda: registry.load(model, models_dir))


def generator_for(man, cut: int, device: str, threads: int):
    from ..engine.cut import CutGenerator

    return cached("generator", (str(man.root), cut, device, threads), lambda: CutGenerator(man, cut, device, threads))


def clear_caches() -> None:
    _CACHE.clear()
