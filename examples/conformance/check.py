"""Run the Python reader (gs_onnx: what gs-recover FOLDER does) on every folder of a conformance kit and compare
with kit.json: valid folders must run (a finite image of the declared shape, the residual an output), invalid ones
must be refused by the rule kit.json names. Prints one line per folder; exit 1 if any folder is not handled as
kit.json says.

    python examples/conformance/check.py KIT [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np


def read(folder: Path) -> dict:
    """What the reader does with a folder: {"outcome": "run", "image": ...} or {"outcome": "refuse", "rule": N}."""
    from gs_onnx.errors import GSError
    from gs_onnx.io.recovery_folder import check_against_graph, read_reference
    from gs_onnx.solve.folder_check import check_residual, open_folder
    from gs_onnx.solve.recovery_graph import GraphRecovery

    try:
        graph, inputs, iface, op = open_folder(folder)
        read_reference(folder, iface)
        runner = GraphRecovery(graph, "cpu", 1)
        check_against_graph(runner.session.get_inputs(), inputs)
        out = runner.run(inputs, chunk=max(1, int(inputs["chunk"]) // 2))
        check_residual(op, inputs, out)
    except GSError as e:
        m = re.search(r"\(rule (\d+)\)", str(e))
        return {"outcome": "refuse", "rule": int(m.group(1)) if m else None, "message": str(e).splitlines()[0]}
    image = out["image"]
    ok = image.shape == tuple(iface["image_shape"]) and bool(np.isfinite(image).all()) and "residual" in out
    return {"outcome": "run" if ok else "bad output", "image": image}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kit", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="write every folder's outcome here")
    a = ap.parse_args(argv)
    kit = json.loads((a.kit / "kit.json").read_text())
    wrong, results = 0, []
    for e in kit["folders"]:
        got = read(a.kit / e["folder"])
        good = got["outcome"] == e["expect"] and (e["expect"] == "run" or got.get("rule") == e["rule"])
        wrong += not good
        results.append({"folder": e["folder"], "expect": e["expect"], "rule": e.get("rule"),
                        **{k: v for k, v in got.items() if k != "image"}, "agrees": good})
        if "image" in got:
            np.save(a.kit / e["folder"] / ".." / f"{Path(e['folder']).name}.python.npy", got["image"])
        words = "ran" if got["outcome"] == "run" else f"refused (rule {got.get('rule')}): {got.get('message', '')}"
        print(f"{'ok  ' if good else 'FAIL'} {e['folder']}: {words}"[:240])
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{len(results) - wrong} of {len(results)} folders handled as kit.json says")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
