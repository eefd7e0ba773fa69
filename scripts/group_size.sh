#!/usr/bin/env bash
# The paper's grid over DiffQ's group size at a fixed λ: group sizes 1, 4,
# 8, 16 and one per tensor (0), λ = 5, on the budget of scripts/equal_size.sh
# (spec CNN --width 2, full Fashion-MNIST, 3 epochs, batch 128, Adam 1e-3
# cosine, one thread), seeds 0 1 2. Writes docs/results/group_size.md/.dat.
#
#   bash scripts/group_size.sh [RUNS_DIR]      (default runs/group_size)
# Environment: DIFFQ (default build/tools/diffq), JOBS (default 2), SEEDS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/group_size}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0 1 2}"
mkdir -p "$RUNS"
BASE="--task fashion-mnist --model cnn --width 2 --epochs 3 --batch-size 128 --lr 0.001 --schedule cosine --threads 1 --progress plain"
jobs_file="$(mktemp)"
for seed in $SEEDS; do
  for g in 16 8 4 0 1; do echo "diffq_l5_g${g}_s$seed|--method diffq --penalty 5 --group-size $g --seed $seed" >> "$jobs_file"; done
done
AFTER_RUN='python3 scripts/seed_table.py "$RUNS" --md docs/results/group_size.md --dat docs/results/group_size.dat \
  --title "DiffQ λ=5 by group size: CNN (width 2), full Fashion-MNIST, 3 epochs, batch 128, Adam 1e-3 cosine"'
# shellcheck source=run_grid.sh
source scripts/run_grid.sh
run_grid "$jobs_file"
