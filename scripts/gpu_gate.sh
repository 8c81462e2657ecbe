#!/usr/bin/env bash
# The gate-valid transformer arms on one GPU machine that has no dvc (the lent device): the same stage
# modules `dvc repro` runs, with the gpu budget selected exactly as
#   dvc exp run -S finetune.budget=gpu -S 'finetune.schemes=[...]'
# would select it: preflight, then every arm x scheme x fold with JOBS runs sharing the GPU at once (one
# MPNet-base LoRA run leaves most of an H100 idle), then collect. Outputs land where dvc writes them
# (data/runs/, data/predictions/, metrics/*_training.json, metrics/preflight.json); with OUT set they are
# also packed into $OUT/gate_outputs.tgz with the per-run logs.
#
# Needs data/prepared and data/folds (carry them) and the backbone: with AES_MODEL_CACHE=/tmp/models and
# the MPNet directory staged at /tmp/models/all-mpnet-base-v2 (../shared/tools/stage-model-for-device),
# `split-zip:all-mpnet-base-v2` resolves there and params stay identical to the committed ones.
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
export AES_PARAMS=${AES_PARAMS:-/tmp/aes-params-$BUDGET.yaml}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

SCHEMES="$SCHEMES" BUDGET="$BUDGET" "$PYTHON" - <<'EOF'
import os, yaml
params = yaml.safe_load(open("params.yaml"))
params["finetune"]["budget"] = os.environ["BUDGET"]
params["finetune"]["schemes"] = os.environ["SCHEMES"].split()
with open(os.environ["AES_PARAMS"], "w") as fh:
    yaml.safe_dump(params, fh, sort_keys=False)
EOF
read -r -a ARMS <<<"$("$PYTHON" -c 'import yaml, os; print(*yaml.safe_load(open(os.environ["AES_PARAMS"]))["finetune"]["arms"])')"
# FOLDS="0 1" runs a slice (e.g. to stay inside a 10-minute call); COLLECT=0 skips collect until all folds exist.
read -r -a FOLDS <<<"${FOLDS:-$("$PYTHON" -c 'import yaml, os; print(*yaml.safe_load(open(os.environ["AES_PARAMS"]))["finetune"]["folds"])')}"

mkdir -p logs
start=$(date +%s)
"$PYTHON" -m stages.preflight 2>&1 | tee logs/preflight.log
for arm in "${ARMS[@]}"; do for scheme in $SCHEMES; do for fold in "${FOLDS[@]}"; do
  echo "$arm $scheme $fold"
done; done; done | xargs -P "$JOBS" -L 1 sh -c \
  '"$0" -m stages.finetune --arm "$1" --scheme "$2" --fold "$3" > "logs/finetune_$1_$2_$3.log" 2>&1 \
   && tail -n 1 "logs/finetune_$1_$2_$3.log" || { tail -n 5 "logs/finetune_$1_$2_$3.log"; exit 255; }' "$PYTHON"
if [ "${COLLECT:-1}" = 1 ]; then
  for arm in "${ARMS[@]}"; do for scheme in $SCHEMES; do
    "$PYTHON" -m stages.collect --arm "$arm" --scheme "$scheme"
  done; done
fi
echo "gate runs: $(( $(date +%s) - start )) s wall for ${#ARMS[@]} arms x ($SCHEMES) x ${#FOLDS[@]} folds, $JOBS at a time" \
  | tee logs/gate_wall.txt
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gate_outputs.tgz" --ignore-failed-read data/runs data/predictions metrics/preflight.json \
    metrics/*_training.json logs
fi
