#!/usr/bin/env bash
# DiffQ against QAT 4 bits at equal size on the language model (issue:
# DiffQ's central claim, item 4): the KJV Transformer of scripts/sweep.sh's
# lm grid (2 layers, width 128, vocabulary 10k, context 32, 6 000 training
# sequences, 2 epochs, batch 32, gradient clip 1, Adam 1e-3 cosine, one
# thread), seeds 0 1 2. DiffQ runs with its defaults in target-size mode at
# QAT 4 bits' true size (`--method diffq --target-mib X`, no other DiffQ
# option but the frozen fraction written out: 0.25 and 0.5). Finished runs are skipped and interrupted ones resumed; the
# table is rewritten after every run. Order: QAT and DiffQ seed by seed,
# then the float and LSQ references, then DiffQ with a frozen fraction of
# 0.5.
#
#   bash scripts/lm_equal_size.sh [RUNS_DIR]     (default runs/lm_equal_size)
# Environment: DIFFQ (default build/tools/diffq), JOBS (default 2), SEEDS;
# TRAIN_LIMIT (default 6000; 0 = all) and EPOCHS (default 2) for a longer budget,
# whose table goes to docs/results/lm_equal_size_<TRAIN_LIMIT>x<EPOCHS>.md
# (the per-epoch validation perplexity is in each run's log.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/lm_equal_size}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0 1 2}"
TRAIN_LIMIT="${TRAIN_LIMIT:-6000}"
EPOCHS="${EPOCHS:-2}"
TABLE=docs/results/lm_equal_size.md
LIMIT_TEXT="$TRAIN_LIMIT sequences"; [[ "$TRAIN_LIMIT" == 0 ]] && LIMIT_TEXT="all training sequences"
if [[ "$TRAIN_LIMIT" != 6000 || "$EPOCHS" != 2 ]]; then
  limit_name="$TRAIN_LIMIT"; [[ "$TRAIN_LIMIT" == 0 ]] && limit_name=all  # 0 = every training sequence
  TABLE="docs/results/lm_equal_size_${limit_name}x${EPOCHS}.md"
fi
mkdir -p "$RUNS"

BASE="--task kjv-lm --model transformer --vocab-size 10000 --context 32 --dim 128 --layers 2 --train-limit $TRAIN_LIMIT --epochs $EPOCHS --batch-size 32 --clip 1 --lr 0.001 --schedule cosine --threads 1 --progress plain"
# True size of QAT 4 bits for this model (diffq train ... --method qat --bits 4: true_mib).
Q4=0.8135528564453125
AFTER_RUN='python3 scripts/seed_table.py "$RUNS" --md "$TABLE" --title "KJV Transformer (2 layers, width 128), $LIMIT_TEXT, $EPOCHS epochs, batch 32, clip 1, Adam 1e-3 cosine, one thread"'
export TABLE TRAIN_LIMIT EPOCHS LIMIT_TEXT
# shellcheck source=run_grid.sh
source scripts/run_grid.sh
jobs_file="$(mktemp)"
for seed in $SEEDS; do
  echo "qat4_s$seed|--method qat --bits 4 --seed $seed" >> "$jobs_file"
  echo "diffq_t4_s$seed|--method diffq --target-mib $Q4 --frozen-fraction 0.25 --seed $seed" >> "$jobs_file"
done
for seed in $SEEDS; do
  echo "fp32_s$seed|--method fp32 --seed $seed" >> "$jobs_file"
  echo "lsq4_s$seed|--method lsq --bits 4 --seed $seed" >> "$jobs_file"
done
# DiffQ with the last half of the steps frozen: the default of target mode
# since 2026-11-27 (the diffq_t4 runs above: 0.25, the default before).
for seed in $SEEDS; do
  echo "diffq_t4_f50_s$seed|--method diffq --target-mib $Q4 --frozen-fraction 0.5 --seed $seed" >> "$jobs_file"
done
run_grid "$jobs_file"
