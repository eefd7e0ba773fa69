#!/usr/bin/env bash
# Quant-Noise's claim on the same footing as the equal-size table (issue:
# DiffQ's central claim, item 5): iPQ after training WITH Quant-Noise
# (proxy drop of whole blocks, p = 0.1, during the whole training, as the
# paper does) against iPQ after plain float training. Same model, data and
# budget as scripts/equal_size.sh (the spec's CNN, --width 2, full
# Fashion-MNIST, 3 epochs, batch 128, Adam 1e-3 cosine, one thread), seeds
# 0 1 2; then iPQ of every quantized layer in one stage (k-means; 256
# centroids over blocks of 8, or 16 over blocks of 16; 3x3 convolutions by
# whole kernels) and centroid fine-tuning from each trained model (step 2).
# The iPQ models of both trained models have the same size.
# Finished runs are skipped and interrupted ones resumed; the table is
# rewritten after every run.
#
#   bash scripts/quant_noise_ipq.sh [RUNS_DIR]     (default runs/quant_noise_ipq)
# Environment: DIFFQ (default build/tools/diffq), JOBS (default 2), SEEDS, P.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/quant_noise_ipq}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0 1 2}"
P="${P:-0.1}"
mkdir -p "$RUNS"

BASE="--task fashion-mnist --model cnn --width 2 --batch-size 128 --lr 0.001 --schedule cosine --threads 1 --progress plain"
AFTER_RUN='python3 scripts/seed_table.py "$RUNS" --md docs/results/quant_noise_ipq.md \
  --title "CNN (width 2), full Fashion-MNIST, batch 128, Adam 1e-3 cosine, one thread: 3 epochs of training, then iPQ + 1 epoch of centroid fine-tuning"'
# shellcheck source=run_grid.sh
source scripts/run_grid.sh

# 1. The trained models: plain float, and float trained under Quant-Noise.
jobs_file="$(mktemp)"
for seed in $SEEDS; do
  echo "float_s$seed|--method fp32 --epochs 3 --seed $seed" >> "$jobs_file"
  echo "qnoise_p${P}_s$seed|--method quant-noise --opt qn_mode=proxy --opt p=$P --epochs 3 --seed $seed" >> "$jobs_file"
done
run_grid "$jobs_file"

# 2. iPQ of each (same options, so the same size): 256 centroids over
#    blocks of 8 with 1 epoch of fine-tuning (ipq_); the same with a single
#    fine-tuning step of 128 images (ipq_1step_: the k-means result itself,
#    nearly untouched, so the trained model's robustness to it); and a
#    harsher code, 16 centroids over blocks of 16, 1 epoch (ipq16_).
IPQ="--method quant-noise --opt qn_mode=ipq --epochs 1"
jobs_file="$(mktemp)"
for seed in $SEEDS; do
  for from in float "qnoise_p${P}"; do
    model="$RUNS/${from}_s$seed/model.diffq"
    if [[ ! -f "$model" ]]; then echo "missing $model: skipping its iPQ runs"; continue; fi
    echo "ipq_after_${from}_s$seed|$IPQ --opt centroids=256 --opt block_size=8 --init $model --seed $seed" >> "$jobs_file"
    echo "ipq_1step_after_${from}_s$seed|$IPQ --opt centroids=256 --opt block_size=8 --train-limit 128 --init $model --seed $seed" >> "$jobs_file"
    echo "ipq16_after_${from}_s$seed|$IPQ --opt centroids=16 --opt block_size=16 --init $model --seed $seed" >> "$jobs_file"
  done
done
run_grid "$jobs_file"
