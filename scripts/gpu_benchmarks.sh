#!/usr/bin/env bash
# The speed measurements on one GPU (the lent device; no dvc needed): the benchmark command on the gpu
# budget's real backbone and folds, for
#   straightforward  full MPNet-base fine-tune, bf16, fixed micro-batches of 16, eager attention, plain AdamW,
#                    a host read of the loss every micro-batch, collation in the loop (the issue's ~8% MFU loop)
#   optimised        full fine-tune with the speed settings (SDPA, fused AdamW, deferred checks, loader
#                    workers, pinned async copies, one 32-essay micro-batch), without / with torch.compile
#   lora, adversarial, groupdro  the committed gpu budget as the gate runs it (LoRA, gradient checkpointing)
# Each writes metrics/benchmark_gpu_<variant>.json; with OUT set they are packed into $OUT/benchmarks.tgz.
#
#   AES_MODEL_CACHE=/tmp/models STEPS=20 scripts/gpu_benchmarks.sh
#   VARIANTS="straightforward optimised" STEPS=20 scripts/gpu_benchmarks.sh   # the pair that gives MFU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-20}    # measured optimizer steps per variant
WARMUP=${WARMUP:-3}   # unmeasured optimizer steps first
BUDGET=${BUDGET:-gpu} # another budget only to try the script out (a test runs it on cpu)
read -r -a SET <<<"${SET:-}"  # extra KEY=VALUE budget overrides for every variant
# VARIANTS: the variants to run (default all; the device plan's last call runs "straightforward optimised")
VARIANTS=" ${VARIANTS:-straightforward optimised lora adversarial groupdro optimised_compiled} "
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
. scripts/straightforward_loop.sh
FAILED=""
mkdir -p logs
bench() {  # one variant; a failure is reported at the end and does not stop the others
  local name=$1; shift
  [[ "$VARIANTS" == *" $name "* ]] || return 0
  "$PYTHON" -m tools.benchmark --budget "$BUDGET" --scheme prompt_holdout --fold 0 --max-steps "$STEPS" \
    --warmup-steps "$WARMUP" --eval-batches 4 --out "metrics/benchmark_${BUDGET}_${name}.json" \
    ${SET[@]+"${SET[@]/#/--set=}"} "$@" \
    > "logs/benchmark_${name}.log" 2>&1 && tail -n 1 "logs/benchmark_${name}.log" \
    || { tail -n 5 "logs/benchmark_${name}.log"; FAILED="$FAILED $name"; }
}
FULL=(--full-finetune --set lr=3.0e-5 --set gradient_checkpointing=false)
bench straightforward "${FULL[@]}" "${STRAIGHTFORWARD[@]/#/--set=}"
bench optimised "${FULL[@]}"
for arm in lora adversarial groupdro; do
  bench "$arm" --arm "$arm"
done
bench optimised_compiled "${FULL[@]}" --set speed.compile=true  # last: compiling takes longest and may fail
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/benchmarks.tgz" --ignore-failed-read metrics/benchmark_"$BUDGET"_*.json logs/benchmark_*.log
fi
if [ -n "$FAILED" ]; then
  echo "failed:$FAILED (see logs/benchmark_<variant>.log)" >&2
  exit 1
fi
