"""Collect per-image PSNRs of gs_vs_nogs.py runs into one CSV (docs/results_per_image.csv).

    python benchmarks/per_image_csv.py runs/issue2_digiface runs/i3/* > docs/results_per_image.csv
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    print("run,model,cut,index,source,psnr,measurement_error,seconds,evaluations,max_iter,restarts")
    for run in sys.argv[1:]:
        run = Path(run)
        side = json.loads((run / "meas.json").read_text())
        for rep_path in sorted(run.glob("cut*/report.json")):
            rep = json.loads(rep_path.read_text())
            for r in rep["images"]:
                src = Path(side["sources"][r["index"]]["path"]).name
                print(f"{run.name},{rep['model']},{rep['cut']},{r['index']},{src},{r['psnr']},"
                      f"{r['measurement_error']:.5f},{r['seconds']},{r['evaluations']},{rep['budget']['max_iter']},"
                      f"{rep['restarts']}")


if __name__ == "__main__":
    main()
