#!/usr/bin/env bash
# PSNR of c=0 vs the paper's cut for the three CelebA-trained models, torch reference on a lent GPU, all six
# (model, image set) runs side by side. Carries .gpu/w (gs-train run folders) and .gpu/eval (first 20 test
# images of each set). Usage: bash export/gpu_eval.sh [restarts] [max_iter] [deadline_s]
set -u
R=${1:-1}; IT=${2:-300}; DL=${3:-160}
export PYTHONPATH=export:. PYTHONUNBUFFERED=1
nvidia-smi -L
for spec in dcgan:crops64 dcgan:coco began:aligned began:coco vae:aligned vae:coco; do
  m=${spec%%:*}; s=${spec#*:}
  python3 -m gs_export.eval_torch --run .gpu/w/$m --images .gpu/eval/$s --n 20 --restarts $R --max-iter $IT \
      --device cuda --deadline $DL --out $OUT/${m}_${s}.jsonl >> $OUT/eval.log 2>&1 &
done
wait
wc -l $OUT/*.jsonl; tail -n 20 $OUT/eval.log  # 7 files: the device tool returns at most 8
