#!/usr/bin/env bash
# The prepared GPU check (issue: device-resident recovery engine). Self-contained on a fresh H100/H200 with
# onnxruntime-gpu unpacked from staged parts (../shared/GPU.md, command 4 sets PYTHONPATH and GS_ONNX_MODELS);
# finishes in under 8 minutes (the recovery-graph step capped at 150 s) and writes at most 8 files into RESULTS_DIR:
#   env.txt      GPU, driver, CUDA, onnxruntime(-gpu), torch versions; the providers that load
#   pytest.txt   the CUDA-marked tests and the engine tests on this machine
#   perf.json    benchmarks/perf.py --device cuda: runtime vs torch eager, batch 1/3/32/96, FLOP/s vs matmul
#   perf.md      the same as a docs/benchmarks.md page
#   recovery_graph.json  the whole recovery in one ONNX graph vs the host-driven L-BFGS, ms per iteration
#   check.json   PSNR parity against the committed CPU run, wall time per image at the paper budget (with the
#                share spent in scipy), DCGAN images per second with images x restarts batched
#   webgpu.txt   the WebGPU plugin provider (onnxruntime-ep-webgpu, where installed): the devices ONNX Runtime lists,
#                a dcgan recovery with --device webgpu against --device cpu; Chromium's WebGPU page test where
#                chromium and node are there
#   log.txt      everything printed
# Usage: bash benchmarks/gpu_check.sh RESULTS_DIR [--device cpu] [--quick]
#   --device cpu --quick runs the same steps here on the CPU, small, to test the script before GPU time
#   (PYTHON=.venv/bin/python picks the interpreter). It reads .devdata/ (10 CelebA test faces): make it with
#   `python benchmarks/gpu_check.py prepare --out .devdata` where ../shared/data is, and carry it along.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh RESULTS_DIR [--device cpu] [--quick]}
shift
DEVICE=cuda
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
PY=${PYTHON:-python3}
LOG="$OUT/log.txt"
: > "$LOG"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
START=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - START )) s)" | tee -a "$LOG"; }

step env
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
  $PY - <<'EOF'
import platform
print("python", platform.python_version())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
          torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
except Exception as e:
    print("torch: not importable:", e)
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.__file__)
print("available providers", ort.get_available_providers())
from gs_onnx.engine.runtime import resolve_device
for d in ("cpu", "cuda", "webgpu"):
    try:
        print(d, "->", resolve_device(d))
    except Exception as e:
        print(d, "->", e)
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >> "$LOG"

if [ "$QUICK" = 1 ]; then
  TESTS=(tests/test_engine.py -k "iobinding_equals or cuda")
  PERF=(--models dcgan:1 --batches 1,3 --only eval,flops)
  CHECK=(--throughput-images 2 --throughput-iters 5 --only parity,throughput)
else
  TESTS=(tests/test_engine.py)
  PERF=(--models dcgan:1,began:2 --only eval,optimizer,flops --optimizer-iters 20)
  CHECK=()
fi

step pytest
timeout 80 $PY -m pytest -q -p no:cacheprovider "${TESTS[@]}" -rs > "$OUT/pytest.txt" 2>&1
echo "pytest exit $?" >> "$OUT/pytest.txt"
tail -5 "$OUT/pytest.txt" | tee -a "$LOG"

step perf
timeout 200 $PY benchmarks/perf.py --device "$DEVICE" "${PERF[@]}" --json "$OUT/perf.json" --out "$OUT/perf.md" \
  >> "$LOG" 2>&1 || echo "perf.py failed or timed out (exit $?)" | tee -a "$LOG"

step recovery-graph
if [ "$QUICK" = 1 ]; then RG=(--models dcgan --iters 10 --rounds 1); else RG=(--iters 50 --rounds 3); fi
timeout 150 $PY benchmarks/recovery_graph_perf.py --device "$DEVICE" "${RG[@]}" --out "$OUT/recovery_graph.json" \
  >> "$LOG" 2>&1 || echo "recovery_graph_perf.py failed or timed out (exit $?)" | tee -a "$LOG"

step check
timeout 170 $PY benchmarks/gpu_check.py run --data .devdata --device "$DEVICE" --out "$OUT/check.json" "${CHECK[@]}" \
  >> "$LOG" 2>&1 || echo "gpu_check.py failed or timed out (exit $?)" | tee -a "$LOG"

step webgpu
{
  timeout 30 $PY - <<'EOF'
from gs_onnx.engine.runtime import webgpu_devices
try:
    print("webgpu devices", [(d.ep_vendor, d.device.type, dict(d.device.metadata)) for d in webgpu_devices()])
except Exception as e:
    print("webgpu:", e)
EOF
  M=$(mktemp -d)
  $PY -c "from gs_onnx.cli import measure_main; measure_main()" gs_onnx/samples/celeba64_182638.jpg --model dcgan \
    --ratio 0.1628 -o "$M/m.npy" -q 2>&1
  for d in cpu webgpu; do
    /usr/bin/time -f "$d: %e s wall" timeout 60 $PY -c "from gs_onnx.cli import recover_main; recover_main()" \
      "$M/m.npy" --method gs --device "$d" -o "$M/out-$d" -q 2>&1 | tail -2
  done
  if command -v chromium >/dev/null && command -v node >/dev/null && [ -d examples/web/node_modules ]; then
    timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_web.py -k webgpu 2>&1 | tail -3
  else
    echo "no chromium/node/examples/web/node_modules here: the browser's WebGPU run is skipped"
  fi
} > "$OUT/webgpu.txt" 2>&1
tail -6 "$OUT/webgpu.txt" | tee -a "$LOG"

step "done"
ls -la "$OUT" >> "$LOG"
