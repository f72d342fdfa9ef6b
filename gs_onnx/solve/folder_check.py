"""A recovery folder read as ``gs-recover FOLDER`` reads it: the MUST rules of docs/recovery-graph.md section 12
(:mod:`gs_onnx.io.recovery_folder`), then the SHOULD of rule 7 a reader that knows the operators keeps, before and
after the run: the operator ``recovery.json`` describes, rebuilt (:mod:`gs_onnx.physics.sidecar`), gives the tables
the folder feeds its graph and the residual the graph reports.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GSError
from ..io.recovery_folder import read_folder
from ..physics.sidecar import operator_for_tables


def open_folder(folder) -> tuple[bytes, dict[str, np.ndarray], dict, object]:
    """A recovery folder read as ``gs-recover FOLDER`` reads it: every MUST of section 12 (:func:`~gs_onnx.io.
    recovery_folder.read_folder`), then the SHOULD of rule 7 a reader that knows the operators keeps: the operator
    ``recovery.json`` describes, rebuilt, feeds its graph exactly the tables the folder gives (an interface whose
    operator was edited is refused). Returns (graph bytes, inputs by name, interface, the operator)."""
    graph, inputs, iface = read_folder(folder)
    try:
        op = operator_for_tables(iface["operator"], inputs)
    except GSError as e:
        raise GSError(f"{Path(folder) / 'recovery.json'}: {e} (rule 7)") from None
    return graph, inputs, iface, op


def check_residual(op, inputs: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> float | None:
    """The SHOULD of rule 7 after a run: the operator ``recovery.json`` describes gives the graph's own ``residual``
    for its ``image`` (a graph whose operator is not the one described, in constants no table shows, fails here);
    returns ``||A image - y||`` recomputed (None for a graph without a ``residual``). A dense operator is applied
    from the folder's verified ``A``."""
    if "residual" not in out:
        return None
    y = inputs["y"].reshape(1, -1).astype(np.float64)
    x = np.asarray(out["image"], np.float32).reshape(1, -1)
    ax = x @ inputs["A"].T if "A" in inputs else op.forward(x)
    mine = float(np.linalg.norm(ax.astype(np.float64) - y))
    theirs = float(out["residual"])
    if not abs(mine - theirs) <= 1e-3 * theirs + 1e-4 * float(np.linalg.norm(y)):
        raise GSError(f"the recovery graph reports a residual of {theirs:.6g}, but the operator recovery.json "
                      f"describes leaves {mine:.6g} for its image: the graph does not run that operator (rule 7)")
    return mine
