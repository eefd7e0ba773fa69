#!/usr/bin/env bash
# One-shot mixed precision on Fashion-MNIST (docs/results/one_shot.md):
# float pretraining -> one coupled training run (--method oneshot) ->
# `diffq search` at the BitOPs of uniform W3A3, W4A4, W5A5 plus the uniform
# read-outs W2A2..W6A6 (zero retraining) -> LSQ-QAT of the three searched
# configurations and of uniform W3A3 / W4A4 trained separately (lsq-mixed)
# from the same float model, same epochs as the coupled run. Per seed. The
# search runs twice: as `diffq search` does by default (soft held-out error,
# final check against the uniform configuration of the budget's cost) and
# without the final check (`--compare-rounds 0`, in search_greedy/), so that
# the greedy configuration's own accuracy is on record too. Then the
# ablations at the W3A3 budget (scheduler off, IDM off).
#
# Usage: scripts/one_shot.sh [seed...]   (default: 0 1 2)
# Environment: DIFFQ (tool), DATA, RUNS (default docs/results/one_shot_runs),
# FLOAT_EPOCHS, EPOCHS, TRAIN_LIMIT (the rest of the training set is the
# search's held-out data), BATCH, WIDTH, JOBS (runs in parallel), ABLATIONS.
set -euo pipefail
cd "$(dirname "$0")/.."
DIFFQ=${DIFFQ:-build/tools/diffq}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
RUNS=${RUNS:-docs/results/one_shot_runs}
FLOAT_EPOCHS=${FLOAT_EPOCHS:-10}  # the float model trained until it stops improving (cosine)
EPOCHS=${EPOCHS:-2}
TRAIN_LIMIT=${TRAIN_LIMIT:-30000}
BATCH=${BATCH:-128}
WIDTH=${WIDTH:-1}
JOBS=${JOBS:-2}
SEEDS=("$@")
[[ ${#SEEDS[@]} -gt 0 ]] || SEEDS=(0 1 2)
BASE="--model oneshot-resnet --width $WIDTH --batch-size $BATCH --train-limit $TRAIN_LIMIT --data-dir $DATA --threads 1 --progress none"
export BASE
source scripts/run_grid.sh
mkdir -p "$RUNS"

# 1. float pretraining (all seeds in parallel)
jobs=$(mktemp)
for s in "${SEEDS[@]}"; do echo "fp32_s$s|--method fp32 --epochs $FLOAT_EPOCHS --seed $s" >> "$jobs"; done
run_grid "$jobs"

# 2. coupled training from the float model
jobs=$(mktemp)
for s in "${SEEDS[@]}"; do
  echo "oneshot_s$s|--method oneshot --epochs $EPOCHS --lr 5e-4 --seed $s --init $RUNS/fp32_s$s/model.diffq" >> "$jobs"
done
run_grid "$jobs"

# 3. search (zero retraining): three budgets and the uniform read-outs
# run_search RUN OUT NAME ARGS...: `diffq search RUN ARGS...` into OUT (its
# table in RUN/NAME.txt), skipped when OUT holds its points already.
run_search() {
  local run="$1" out="$2" name="$3"
  shift 3
  if [[ -f "$out/points.json" ]]; then echo "skip $name $run (done)"; return 0; fi
  echo "$name $run"
  "$DIFFQ" search "$run" "$@" --data-dir "$DATA" --out "$out" > "$run/$name.txt" 2>&1 || echo "FAILED $name $run"
}
export -f run_search
export DATA DIFFQ
ALL_BUDGETS="--budget-bitops W3A3 --budget-bitops W4A4 --budget-bitops W5A5"
for s in "${SEEDS[@]}"; do
  run="$RUNS/oneshot_s$s"
  echo "run_search $run $run/search search $ALL_BUDGETS --uniform"
  # without the final check: the greedy configuration's own accuracy
  echo "run_search $run $run/search_greedy search_greedy $ALL_BUDGETS --compare-rounds 0"
done | xargs -P "$JOBS" -I{} bash -c '{}'

# 4. separately trained LSQ of the searched and the uniform configurations
jobs=$(mktemp)
for s in "${SEEDS[@]}"; do
  out="$RUNS/oneshot_s$s/search"
  for c in bitops_W3A3 bitops_W4A4 bitops_W5A5 W3A3 W4A4; do
    echo "lsq_${c}_s$s|--method lsq-mixed --epochs $EPOCHS --lr 5e-4 --seed $s --init $RUNS/fp32_s$s/model.diffq --opt config=$out/$c.json" >> "$jobs"
  done
done
run_grid "$jobs"

# 5. ablations at the W3A3 budget (ABLATIONS=0 skips them): the coupled
# training without the bit-width scheduler, and without the distortion term
# (IDM); each searched as in step 3.
if [[ "${ABLATIONS:-1}" == 1 ]]; then
  jobs=$(mktemp)
  for s in "${SEEDS[@]}"; do
    for a in "noscheduler|scheduler=0" "noidm|idm=0"; do
      echo "oneshot_${a%%|*}_s$s|--method oneshot --epochs $EPOCHS --lr 5e-4 --seed $s --init $RUNS/fp32_s$s/model.diffq --opt ${a#*|}" >> "$jobs"
    done
  done
  run_grid "$jobs"
  for s in "${SEEDS[@]}"; do
    for a in noscheduler noidm; do
      run="$RUNS/oneshot_${a}_s$s"
      echo "run_search $run $run/search search --budget-bitops W3A3 --uniform"
    done
  done | xargs -P "$JOBS" -I{} bash -c '{}'
fi

python3 scripts/one_shot_table.py "$RUNS" > docs/results/one_shot.md
echo "wrote docs/results/one_shot.md"
