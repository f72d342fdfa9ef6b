#!/usr/bin/env bash
# The CelebA training runs, as done on a lent H100 (see docs/training.md). Two phases because the two
# training sets together exceed what one device call may carry:
#   phase1: copies the 64 px crops (carried as .gpu/c64/crops64.zip) to /tmp and starts DCGAN in the background;
#   phase2: copies the aligned faces (.gpu/al/aligned.zip), trains BEGAN and VAE side by side, waits for DCGAN and
#           copies generator state_dicts, train.json records and the log to $OUT.
# Anywhere else: gs-train dcgan|began|vae --data DIR --out DIR [--time-budget S] does the same, one by one.
set -u
W=/tmp/gs
PY="env PYTHONPATH=$W/export:$W PYTHONUNBUFFERED=1 python3 -m gs_export.train"
case "${1:-}" in
phase1)
  mkdir -p $W/data $W/runs && python3 -m zipfile -e .gpu/c64/crops64.zip $W/data/ && cp -r export gs_onnx $W/
  nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  setsid nohup $PY dcgan --data $W/data/crops64 --out $W/runs/dcgan --time-budget "${DCGAN_BUDGET:-400}" \
      --no-resume > $W/dcgan.log 2>&1 < /dev/null &
  sleep 25; cat $W/dcgan.log ;;
phase2)
  [ -d $W/runs ] || { echo "phase1 state lost (/tmp/gs/runs missing)"; }
  mkdir -p $W/data $W/runs && python3 -m zipfile -e .gpu/al/aligned.zip $W/data/ && cp -r export gs_onnx $W/
  $PY began --data $W/data/aligned --out $W/runs/began --time-budget "${BEGAN_BUDGET:-430}" --no-resume \
      > $W/began.log 2>&1 &
  $PY vae --data $W/data/aligned --out $W/runs/vae --time-budget "${VAE_BUDGET:-380}" --no-resume \
      > $W/vae.log 2>&1 &
  wait
  for i in $(seq 60); do [ -f $W/runs/dcgan/train.json ] && break; sleep 2; done
  for m in dcgan began vae; do
    mkdir -p $OUT/$m; cp $W/runs/$m/generator.pt $W/runs/$m/train.json $OUT/$m/ 2>/dev/null
  done
  tail -n 5 $W/*.log > $OUT/train.log 2>&1; cat $OUT/train.log; nvidia-smi --query-gpu=memory.used --format=csv ;;
*) echo "usage: $0 phase1|phase2"; exit 2 ;;
esac
