#!/usr/bin/env bash
# The experiments behind docs/results.md ("The paper's figures"), with the reduced budgets stated there.
# Resumable: rerun after an interruption and finished rows are skipped. About 70 minutes on 2 CPU cores.
#   bash benchmarks/experiments.sh [OUT]      (default OUT=runs/exp; needs the export, plot extras)
set -euo pipefail
OUT=${1:-runs/exp}
BIN=${BIN:-.venv/bin}
W="--workers 2 --no-progress"
# the fixed reduced budgets of docs/results.md (not the models' stopping plans, gs-experiment's default)
RED="--budget paper --restarts 1 --max-iter 100"
# the datasets: ../shared/data where the project's data sits, else `gs-experiment data`'s folder
export GS_ONNX_DATA=${GS_ONNX_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
$BIN/gs-experiment samples --models dcgan,began,vae --count 8 -o "$OUT/samples" --no-progress
$BIN/gs-experiment raw --models dcgan,vae --images 5 --restarts 1 --max-iter 300 $W -o "$OUT/raw"
$BIN/gs-experiment raw --models dcgan --images 20 --restarts 1 --max-iter 300 $W -o "$OUT/raw"  # DCGAN: 20 images
$BIN/gs-experiment cs --models dcgan --datasets celeba-test,coco --images 20 --ratios paper $RED \
  --lasso-iter 500 $W -o "$OUT/cs"
if [ ! -f "$OUT/models/dcgan-untrained/manifest.json" ]; then
  $BIN/gs-export untrained --arch dcgan --config '{"nz": 100, "ngf": 64, "nc": 3, "image_size": 64}' \
    --name dcgan-untrained --out "$OUT/models/dcgan-untrained"
fi
$BIN/gs-experiment untrained --models dcgan --untrained "$OUT/models/dcgan-untrained" --images 20 \
  --ratios 0.0163,0.0488,0.1628,0.4883 $RED $W -o "$OUT/untrained"
$BIN/gs-experiment cuts --models dcgan --images 20 --ratios 0.0488,0.1628 $RED $W -o "$OUT/cuts"
$BIN/gs-experiment init --models dcgan --images 20 --ratios 0.0163,0.0488,0.1628 $RED $W -o "$OUT/init"
$BIN/gs-experiment baselines --models dcgan --images 5 --ratios 0.0488,0.1628,0.3255 $RED --steps 1000 \
  --finetune-steps 150 $W -o "$OUT/baselines"
