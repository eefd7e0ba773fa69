#!/usr/bin/env bash
# The default experiment: float32 vs DiffQ on Fashion-MNIST (small CNN,
# 10 000 training images, full 10k test set, 3 epochs, one thread per run,
# the two runs in parallel: a few minutes on 2 cores). Ends with a table.
#   bash scripts/default_experiment.sh [OUT_DIR]    (default: runs/default)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/default}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
mkdir -p "$OUT"
COMMON=(--task fashion-mnist --model cnn --train-limit 10000 --epochs 3 --batch-size 64 --threads 1 --progress plain --resume)
"$DIFFQ" train "${COMMON[@]}" --method fp32 --out "$OUT/fp32" > "$OUT.fp32.log" 2>&1 &
"$DIFFQ" train "${COMMON[@]}" --method diffq --penalty 5 --group-size 16 --bits-lr 0.05 --out "$OUT/diffq"
wait
"$DIFFQ" summarize "$OUT" --title "float32 vs DiffQ, Fashion-MNIST, small CNN, 10k images, 3 epochs"
echo
echo "DiffQ model file: $OUT/diffq/model.diffq  (try: $DIFFQ eval $OUT/diffq/model.diffq; $DIFFQ inspect $OUT/diffq/model.diffq)"
