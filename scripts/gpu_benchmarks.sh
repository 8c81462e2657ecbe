#!/usr/bin/env bash
# Issue 6's measurements on one GPU (the lent device; no dvc needed): the benchmark command on the gpu
# budget's real backbone and folds, for
#   straightforward  full MPNet-base fine-tune, bf16, fixed micro-batches of 16, eager attention, plain AdamW,
#                    a host read of the loss every micro-batch, collation in the loop (the issue's ~8% MFU loop)
#   optimised        full fine-tune with the speed settings (SDPA, fused AdamW, deferred checks, loader
#                    workers, pinned async copies, one 32-essay micro-batch), without / with torch.compile
#   lora, adversarial, groupdro  the committed gpu budget as the gate runs it (LoRA, gradient checkpointing)
# Each writes metrics/benchmark_gpu_<variant>.json; with OUT set they are packed into $OUT/benchmarks.tgz.
#
#   AES_MODEL_CACHE=/tmp/models STEPS=20 scripts/gpu_benchmarks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-20}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
bench() {
  local name=$1; shift
  "$PYTHON" -m stages.benchmark --budget gpu --scheme prompt_holdout --fold 0 --max-steps "$STEPS" \
    --warmup-steps 3 --eval-batches 4 --out "metrics/benchmark_gpu_${name}.json" "$@"
}
FULL=(--full-finetune --set lr=3.0e-5 --set gradient_checkpointing=false)
bench straightforward "${FULL[@]}" --set batch_size=16 --set effective_batch=32 --set speed.attention=eager \
  --set speed.fused_optimizer=false --set speed.finite_check_every=1 --set speed.loader_workers=0 \
  --set speed.pin_memory=false
bench optimised "${FULL[@]}"
bench optimised_compiled "${FULL[@]}" --set speed.compile=true
for arm in lora adversarial groupdro; do
  bench "$arm" --arm "$arm"
done
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/benchmarks.tgz" metrics/benchmark_gpu_*.json
fi
