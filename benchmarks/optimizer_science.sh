#!/usr/bin/env bash
# Same science with either optimiser (issue 13): scipy L-BFGS-B vs the batched torch-semantics L-BFGS at the
# same budget (1 restart, fixed iterations, every measurement), the first 10 CelebA test faces, paper noise.
# Usage: benchmarks/optimizer_science.sh OUT   (writes OUT/<model>_<ratio>_<budget>_<optimizer>/report.json
# and OUT/summary.md). PSNR only: run it beside other work if you like, the seconds are not compared.
set -euo pipefail
OUT=${1:-runs/optsci}
BIN=$(dirname "$(command -v python)")
DATA=${GS_ONNX_DATA:-../shared/data}
mkdir -p "$OUT"
run() {  # model cut ratio iterations faces...
  local model=$1 cut=$2 ratio=$3 iters=$4; shift 4
  local tag="${model}_${ratio}_${iters}"
  local refs=(); for f in "$@"; do refs+=(--reference "$f"); done
  [ -f "$OUT/$tag.npy" ] || "$BIN/gs-measure" "$@" --model "$model" --ratio "$ratio" -o "$OUT/$tag.npy" -q
  for opt in scipy lbfgs; do
    [ -f "$OUT/${tag}_$opt/report.json" ] || "$BIN/gs-recover" --model "$model" --cut "$cut" "$OUT/$tag.npy" \
      "${refs[@]}" --optimizer "$opt" --stop fixed --restarts 1 --max-iter "$iters" -o "$OUT/${tag}_$opt" -q --overwrite
  done
}
mapfile -t D64 < <(ls "$DATA"/celeba_crops64/test/* | sort | head -10)
mapfile -t D128 < <(ls "$DATA"/celeba_aligned/test/* | sort | head -10)
run dcgan 1 0.0488 100 "${D64[@]}"
run dcgan 1 0.1628 100 "${D64[@]}"
run dcgan 1 0.1628 500 "${D64[@]}"
run began 2 0.1628 60 "${D128[@]}"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
out = Path(sys.argv[1]); rows = ["| model | m/n | budget | scipy PSNR dB | lbfgs PSNR dB | lbfgs - scipy (mean +- std) | lbfgs better |",
                                 "|---|---|---|---|---|---|---|"]
for npy in sorted(out.glob("*.npy")):
    tag = npy.stem; model, ratio, iters = tag.split("_")
    p = {o: np.array([im["psnr"] for im in json.loads((out / f"{tag}_{o}" / "report.json").read_text())["images"]])
         for o in ("scipy", "lbfgs")}
    d = p["lbfgs"] - p["scipy"]
    rows.append(f"| {model} | {ratio} | 1 x {iters} | {p['scipy'].mean():.2f} +- {p['scipy'].std():.2f} | "
                f"{p['lbfgs'].mean():.2f} +- {p['lbfgs'].std():.2f} | {d.mean():+.2f} +- {d.std():.2f} | "
                f"{int((d > 0).sum())}/{len(d)} |")
(out / "summary.md").write_text("\n".join(rows) + "\n"); print("\n".join(rows))
PY
