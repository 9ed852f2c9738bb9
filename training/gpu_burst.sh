#!/usr/bin/env bash
# One prepared command for the minutes a GPU is at hand:
#   bash training/gpu_burst.sh OUTDIR MINUTES
# 1. the tests that exercise the device paths (precision, NaN fallback, tiling, out-of-memory retries) on this machine;
# 2. every restoration pipeline timed in fp32/fp16/bf16 (OUTDIR/timings.md);
# 3. the heaviest models trained further from the shipped weights, sharing MINUTES of wall clock (each run ends its
#    schedule inside its share), evaluated, and their Hub-ready folders packed into OUTDIR/weights.tar.gz.
# Runs end to end on a CPU too (a test does it with a tiny budget), so it works the first time a GPU appears.
# Environment: DATA (datasets root, default ../shared/datasets), WEIGHTS (default weights), PYTHON (default python),
# BURST_EVAL_IMAGES (evaluation images per set, 0 = all), BURST_SKIP_TESTS=1 to skip step 1, BURST_RUNS (lines of
# "share name script args", replacing the runs below).
set -euo pipefail
OUT=${1:?usage: bash training/gpu_burst.sh OUTDIR MINUTES}
MINUTES=${2:?usage: bash training/gpu_burst.sh OUTDIR MINUTES}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${DATA:-../shared/datasets}
WEIGHTS=${WEIGHTS:-weights}
EVAL=${BURST_EVAL_IMAGES:-0}
mkdir -p "$OUT/runs" "$OUT/weights"
log() { echo "[gpu_burst $(date +%H:%M:%S)] $*" | tee -a "$OUT/burst.log"; }
$PY -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu only')" \
  | tee -a "$OUT/burst.log"

if [ "${BURST_SKIP_TESTS:-0}" != 1 ]; then
  log "1/3 device tests"
  GRADIO_ANALYTICS_ENABLED=False $PY -m pytest -q -x tests/test_pipelines.py tests/test_models.py \
    -k "precision or nan or tile or tiling or oom or device or forward" >"$OUT/tests.txt" 2>&1 \
    && log "tests passed" || log "tests FAILED (see tests.txt); going on"
fi

log "2/3 pipeline timings"
$PY training/gpu_time.py --weights "$WEIGHTS" --json "$OUT/timings.json" | tee "$OUT/timings.md"

log "3/3 training from the shipped weights, $MINUTES minutes in all"
# the share of the budget each model gets, and its script and arguments
runs=(
  "0.4 denoise training/train_denoise.py --model denoise-unet --batch-size 64"
  "0.4 inpaint training/train_inpaint.py --model inpaint-unet --batch-size 24 --loss mse --patch 256 --lr 1.5e-4 --warmup 100"
  "0.2 sr-x4-large training/train_sr.py --model sr-edsr-small --scale 4 --batch-size 32"
)
if [ -n "${BURST_RUNS:-}" ]; then mapfile -t runs <<<"$BURST_RUNS"; fi
for run in "${runs[@]}"; do
  read -r share name script args <<<"$run"
  minutes=$($PY -c "print(max(0.05, $MINUTES * $share))")
  init=()
  [ -f "$WEIGHTS/$name/config.json" ] && init=(--init-from "$WEIGHTS/$name")
  log "$name: $minutes min"
  if $PY "$script" $args "${init[@]}" --data "$DATA" --minutes "$minutes" --steps 1000000 --eval-every 1000000000 \
      --eval-max-images "$EVAL" --out "$OUT/weights/$name" --run-dir "$OUT/runs/$name" >"$OUT/runs/$name.txt" 2>&1; then
    log "$name: $(tail -n 1 "$OUT/runs/$name.txt" | cut -c1-300)"
  else
    log "$name FAILED (see runs/$name.txt)"
  fi
done
tar -czf "$OUT/weights.tar.gz" -C "$OUT" weights
log "packed $OUT/weights.tar.gz; compare with the shipped ones: python -m benchmarks.run --only quality --weights DIR"
