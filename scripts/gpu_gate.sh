#!/usr/bin/env bash
# The gate-valid transformer arms on one GPU machine that has no dvc (the lent device): the same stage
# modules `dvc repro` runs, with the gpu budget selected exactly as
#   dvc exp run -S finetune.budget=gpu -S 'finetune.schemes=[...]' -S 'seeds.finetune=[...]'
# would select it: preflight, then every arm x scheme x fold with JOBS runs sharing the GPU at once (one
# MPNet-base LoRA run leaves most of an H100 idle), then collect. Runs go seed by seed (the budget profile's
# `seeds`, or SEEDS="…"): every arm × scheme × fold of the first seed is dispatched before any of the second, so
# a short lease still yields complete single-seed evidence first, and collect packs each seed whose folds are
# all there. Outputs land where dvc writes them (data/runs/, data/predictions/, metrics/training/,
# metrics/preflight.json); with OUT set they are also packed into $OUT/gate_outputs.tgz with the per-run logs.
#
# Needs data/prepared (carry it; data/folds is made here when absent) and the backbone: with
# AES_MODEL_CACHE=/tmp/models and the MPNet directory staged at /tmp/models/all-mpnet-base-v2
# (../shared/tools/stage-model-for-device), `split-zip:all-mpnet-base-v2` resolves there and params stay
# identical to the committed ones.
#
#   AES_MODEL_CACHE=/tmp/models SCHEMES="prompt_holdout stratified_text" JOBS=3 scripts/gpu_gate.sh
#
# Back on the dvc machine: unpack the tarball in the repository, select the same params
# (`finetune.budget: gpu`, the same schemes), `dvc commit -f preflight finetune collect`, then `dvc repro`
# runs evaluation, the gate, the decision record and the report on the GPU evidence.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-3}
SCHEMES=${SCHEMES:-prompt_holdout}
BUDGET=${BUDGET:-gpu}  # another budget only to try the script out (tests run it on cpu)
# SPEED=straightforward: the same gate with the straightforward loop (scripts/straightforward_loop.sh), to
# check the speed settings leave QWK unchanged; SET: more KEY=VALUE budget overrides; ARMS: a subset of the arms.
# Either makes the outputs differ from what the committed params produce: TAG names their tarball, and they
# are compared (tools.equivalence), never `dvc commit`ted.
. scripts/straightforward_loop.sh
read -r -a OVERRIDES <<<"${SET:-}"
if [ "${SPEED:-}" = straightforward ]; then OVERRIDES+=("${STRAIGHTFORWARD[@]}"); fi
TAG=${TAG:-$([ "${SPEED:-}" = straightforward ] && echo straightforward || true)}
mkdir -p logs
export AES_PARAMS=${AES_PARAMS:-$PWD/logs/aes-params-$BUDGET${TAG:+-$TAG}.yaml}  # the selected params
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# The selected params go to $AES_PARAMS; the same call prints their arms and folds (one line each).
selected=$(OVERRIDES="${OVERRIDES[*]}" SCHEMES="$SCHEMES" BUDGET="$BUDGET" ARMS="${ARMS:-}" SEEDS="${SEEDS:-}" \
  "$PYTHON" - <<'EOF_PY'
import os

import yaml

from stages.lib.core.config import load_params, select_budget

overrides = os.environ["OVERRIDES"].split()
seeds = [int(s) for s in os.environ["SEEDS"].split()] or None
if seeds:  # a subset of the profile's seeds (e.g. the first only) is a selection of its own: the profile says so
    overrides.append(f"seeds=[{', '.join(map(str, seeds))}]")
params = select_budget(load_params("params.yaml"), os.environ["BUDGET"], overrides,
                       arms=os.environ["ARMS"].split() or None, schemes=os.environ["SCHEMES"].split(), seeds=seeds)
with open(os.environ["AES_PARAMS"], "w") as fh:
    yaml.safe_dump(params.model_dump(), fh, sort_keys=False)
print(*params.finetune.arms)
print(*params.finetune.folds)
print(*params.seeds.finetune)
EOF_PY
)
{ read -r -a ARMS; read -r -a PARAM_FOLDS; read -r -a SEED_LIST; } <<<"$selected"
# FOLDS="0 1" runs a slice (e.g. to stay inside a 10-minute call); COLLECT=0 skips collect until all folds exist.
read -r -a FOLDS <<<"${FOLDS:-${PARAM_FOLDS[*]}}"

# DEVICES=0,1,2,3 (CUDA_VISIBLE_DEVICES style) places run i on device i mod n, round-robin in dispatch order:
# with JOBS equal to the number of devices that is one run per GPU at a time. Unset, every run sees the
# devices the script was given. logs/device_manifest.csv records the device each run ran on (and, in each run's
# train_log.json, `device` and `num_processes`). A backbone too large for one GPU: run it data-parallel instead,
# `accelerate launch --num_processes N -m stages.finetune …` (docs/scaling.md).
IFS=, read -r -a DEVICE_LIST <<<"${DEVICES:-}"
[ -s logs/device_manifest.csv ] || echo "arm,scheme,seed,fold,device" > logs/device_manifest.csv
start=$(date +%s)
# Only data/prepared needs carrying: the folds stage is deterministic (byte-identical fold files to dvc's, checked
# with md5), and logs/fold_md5.txt lets the dvc machine check that with `md5sum -c logs/fold_md5.txt`.
if [ ! -d data/folds ]; then "$PYTHON" -m stages.folds 2>&1 | tee logs/folds.log; fi
md5sum data/folds/*/fold_*/*.parquet > logs/fold_md5.txt
"$PYTHON" -m stages.preflight 2>&1 | tee logs/preflight.log
# RESUME=1 skips runs already finished in this working copy (a run directory appears only once complete), e.g.
# after a call that ran past its time limit; never use it across different SET/SPEED settings.
# One process runs FOLDS_PER_PROCESS folds of an arm × scheme × seed one after another (default: all of them;
# each fold exactly as a process of its own would run it), so 15 runs cost 3 process starts, not 15.
FOLDS_PER_PROCESS=${FOLDS_PER_PROCESS:-${#FOLDS[@]}}
pack() {  # whatever finished, into $OUT (also when a time limit stops the runs: see the trap below)
  [ -n "${OUT:-}" ] || return 0
  cp "$AES_PARAMS" logs/params_selected.yaml
  echo "${OVERRIDES[*]}" > logs/overrides.txt
  packed=(metrics/preflight.json logs/preflight.log logs/gate_wall.txt logs/params_selected.yaml logs/overrides.txt
          logs/fold_md5.txt logs/device_manifest.csv)
  for arm in "${ARMS[@]}"; do for scheme in $SCHEMES; do  # this run's arms and schemes only
    packed+=("data/runs/$arm/$scheme" "data/predictions/${arm}_$scheme" "metrics/training/${arm}_$scheme")
    packed+=(logs/finetune_"${arm}_${scheme}"_*.log)
  done; done
  tar czf "$OUT/gate_outputs${TAG:+_$TAG}.tgz" --ignore-failed-read --exclude='.*.tmp' --exclude='*.tmp' \
    "${packed[@]}" 2>/dev/null || true
  echo "packed $(tar tzf "$OUT/gate_outputs${TAG:+_$TAG}.tgz" | grep -c 'predictions.parquet$') finished run(s)" \
    "into $OUT/gate_outputs${TAG:+_$TAG}.tgz"
}
# A time limit (timeout sends TERM to the whole process group): the runs in flight discard their partial writes,
# what finished is packed, and the exit status says it stopped early.
trap 'echo "gate runs stopped by a time limit after $(( $(date +%s) - start )) s; RESUME=1 finishes them" \
      | tee -a logs/gate_wall.txt; pack; exit 124' TERM INT
dispatched=0
for seed in "${SEED_LIST[@]}"; do for arm in "${ARMS[@]}"; do for scheme in $SCHEMES; do
  todo=()
  for fold in "${FOLDS[@]}"; do
    if [ "${RESUME:-0}" = 1 ] && [ -d "data/runs/$arm/$scheme/seed_$seed/fold_$fold" ]; then
      echo "skip: $arm $scheme seed $seed fold $fold already finished" >&2
    else
      todo+=("$fold")
    fi
  done
  for (( i = 0; i < ${#todo[@]}; i += FOLDS_PER_PROCESS )); do
    device=-
    if [ "${#DEVICE_LIST[@]}" -gt 0 ]; then device=${DEVICE_LIST[$(( dispatched % ${#DEVICE_LIST[@]} ))]}; fi
    dispatched=$(( dispatched + 1 ))
    echo "$arm $scheme $seed $device ${todo[*]:i:FOLDS_PER_PROCESS}"
  done
done; done; done | xargs -r -P "$JOBS" -L 1 sh -c \
  'arm=$1 scheme=$2 seed=$3 device=$4; shift 4
   [ "$device" = - ] || export CUDA_VISIBLE_DEVICES="$device"
   log="logs/finetune_${arm}_${scheme}_${seed}_$(echo "$@" | tr " " _).log"
   if "$0" -m stages.finetune --arm "$arm" --scheme "$scheme" --seed "$seed" --fold "$@" > "$log" 2>&1; then
     for fold in "$@"; do echo "$arm,$scheme,$seed,$fold,${CUDA_VISIBLE_DEVICES:-all}" >> logs/device_manifest.csv; done
     tail -n "$#" "$log"
   else tail -n 5 "$log"; exit 255; fi' \
  "$PYTHON" &
wait $!  # in the background so that a TERM reaches the trap at once
if [ "${COLLECT:-1}" = 1 ]; then
  for seed in "${SEED_LIST[@]}"; do for arm in "${ARMS[@]}"; do for scheme in $SCHEMES; do
    complete=1
    for fold in "${PARAM_FOLDS[@]}"; do [ -d "data/runs/$arm/$scheme/seed_$seed/fold_$fold" ] || complete=0; done
    if [ "$complete" = 1 ]; then "$PYTHON" -m stages.collect --arm "$arm" --scheme "$scheme" --seed "$seed"
    else echo "collect: $arm $scheme seed $seed not complete yet (RESUME=1 to finish it)" >&2; fi
  done; done; done
fi
echo "gate runs: $(( $(date +%s) - start )) s wall for ${#ARMS[@]} arms x ($SCHEMES) x ${#FOLDS[@]} folds" \
  "x ${#SEED_LIST[@]} seeds (${SEED_LIST[*]}), $JOBS at a time${DEVICES:+ on devices $DEVICES}" \
  "(folds ${FOLDS[*]}${TAG:+, $TAG}${RESUME:+, resume=$RESUME})" | tee -a logs/gate_wall.txt  # slices add lines
pack
