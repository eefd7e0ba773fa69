#!/usr/bin/env bash
# DiffQ against QAT and LSQ at equal size (issue: DiffQ's central claim):
# the spec's CNN (--width 2) on the full Fashion-MNIST, 3 epochs, batch 128,
# Adam 1e-3 with a cosine schedule, one thread per run, seeds 0 1 2. DiffQ
# runs in target-size mode at the true sizes of QAT 2/3/4 bits (at 2 bits
# with --target-bits 2: DiffQ's per-tensor header is 8 bits larger than
# QAT's, so every group at 2 bits is the only configuration of that size),
# with and without a final frozen-bits phase. Finished runs are skipped and
# interrupted ones resumed; the table is rewritten after every run.
#
#   bash scripts/equal_size.sh [RUNS_DIR]      (default runs/equal_size)
# Environment: DIFFQ (default build/tools/diffq), JOBS (default 2), SEEDS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/equal_size}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0 1 2}"
mkdir -p "$RUNS"

BASE="--task fashion-mnist --model cnn --width 2 --epochs 3 --batch-size 128 --lr 0.001 --schedule cosine --threads 1 --progress plain"
# True sizes of QAT at 3 and 4 bits for this model (diffq train --method qat --bits B: true_mib).
Q3=0.30596160888671875
Q4=0.40386199951171875
DQ="--method diffq --group-size 8"

jobs_file="$(mktemp)"
for seed in $SEEDS; do
  add() { echo "$1_s$seed|$2 --seed $seed" >> "$jobs_file"; }
  add fp32 "--method fp32"
  for b in 2 3 4; do add qat$b "--method qat --bits $b"; done
  add diffq_t2 "$DQ --target-bits 2"
  add diffq_t3 "$DQ --target-mib $Q3"
  add diffq_t4 "$DQ --target-mib $Q4"
  add diffq_t2_f25 "$DQ --target-bits 2 --frozen-fraction 0.25"
  add diffq_t3_f25 "$DQ --target-mib $Q3 --frozen-fraction 0.25"
  add diffq_t4_f25 "$DQ --target-mib $Q4 --frozen-fraction 0.25"
  for b in 2 3 4; do add lsq$b "--method lsq --bits $b"; done
done
# A longer frozen phase at the 2-bit size; then the defaults (group size
# 16, no other DiffQ option) with the frozen fraction of target mode
# written out: `default_*` 0.25 (the default until 2026-11-27),
# `default_*_f50` 0.5 (the default since: these runs are what
# `--method diffq --target-... X` alone gives).
for seed in $SEEDS; do
  add() { echo "$1_s$seed|$2 --seed $seed" >> "$jobs_file"; }
  add diffq_t2_f50 "$DQ --target-bits 2 --frozen-fraction 0.5"
  add default_t2 "--method diffq --target-bits 2 --frozen-fraction 0.25"
  add default_t3 "--method diffq --target-mib $Q3 --frozen-fraction 0.25"
  add default_t4 "--method diffq --target-mib $Q4 --frozen-fraction 0.25"
  add default_t2_f50 "--method diffq --target-bits 2 --frozen-fraction 0.5"
  add default_t3_f50 "--method diffq --target-mib $Q3 --frozen-fraction 0.5"
  add default_t4_f50 "--method diffq --target-mib $Q4 --frozen-fraction 0.5"
done

AFTER_RUN='python3 scripts/seed_table.py "$RUNS" --md docs/results/equal_size.md --dat docs/results/equal_size.dat \
  --title "CNN (width 2), full Fashion-MNIST, 3 epochs, batch 128, Adam 1e-3 cosine, one thread"'
# shellcheck source=run_grid.sh
source scripts/run_grid.sh
run_grid "$jobs_file"
if command -v gnuplot >/dev/null; then (cd docs/results && gnuplot ../../scripts/equal_size.gnuplot); fi
