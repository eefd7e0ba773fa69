#!/usr/bin/env bash
# The experiments of docs/results: runs a grid of `diffq train` runs (at most
# JOBS at a time, one thread each), then writes the tables and plots.
#
#   bash scripts/sweep.sh [RUNS_DIR]        (default: runs/)
#
# Environment: DIFFQ (the tool, default build/tools/diffq), JOBS (default 2),
# GRID (fashion, groups, lm, claims or all; default all). Finished runs are skipped
# and interrupted ones resumed, so the script can be re-run after a kill.
# Budgets (recorded in every metrics.json and in the tables):
#   fashion: ResNet-20 style, 10 000 train images, full 10k test, 3 epochs;
#   groups:  small CNN, 10 000 train images, full test, 3 epochs;
#   lm:      KJV Transformer, vocab 10k, context 32, 6 000 train sequences, 2 epochs;
#   claims:  the three-seed tables of docs/results/README.md (equal size,
#            group size, Quant-Noise + iPQ, language model, BatchNorm ResNet:
#            scripts/equal_size.sh, group_size.sh, quant_noise_ipq.sh,
#            lm_equal_size.sh, resnet_equal_size.sh (about 6 hours on 2 cores); the
#            one-shot table is scripts/one_shot.sh, about 80 minutes on its own).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
JOBS="${JOBS:-2}"
GRID="${GRID:-all}"
mkdir -p "$RUNS"

FM="--task fashion-mnist --train-limit 10000 --epochs 3 --batch-size 64 --threads 1 --progress plain"
RN="$FM --model resnet20 --norm group"  # the GroupNorm variant of the published tables
CN="$FM --model cnn"
LM="--task kjv-lm --model transformer --vocab-size 10000 --context 32 --dim 128 --layers 2 --train-limit 6000 --epochs 2 --batch-size 32 --clip 1 --threads 1 --progress plain"
DQ="--bits-lr 0.05"

jobs_file="$(mktemp)"
add() { echo "$1|$2" >> "$jobs_file"; }
if [[ "$GRID" == all || "$GRID" == fashion ]]; then
  add fashion/fp32          "$RN --method fp32"
  add fashion/diffq_l5_g16  "$RN --method diffq --penalty 5 --group-size 16 $DQ"
  add fashion/diffq_l50_g16 "$RN --method diffq --penalty 50 --group-size 16 $DQ"
  add fashion/qat2          "$RN --method qat --bits 2"
  add fashion/qat4          "$RN --method qat --bits 4"
fi
if [[ "$GRID" == all || "$GRID" == lm ]]; then
  add lm/fp32               "$LM --method fp32"
  add lm/diffq_l5_g16       "$LM --method diffq --penalty 5 --group-size 16 $DQ"
  add lm/qat4               "$LM --method qat --bits 4"
fi
if [[ "$GRID" == all || "$GRID" == lm2 ]]; then
  add lm/diffq_l1_g16_blr01 "$LM --method diffq --penalty 1 --group-size 16 --bits-lr 0.01"
  add lm/diffq_l5_g16_blr01 "$LM --method diffq --penalty 5 --group-size 16 --bits-lr 0.01"
fi
if [[ "$GRID" == all || "$GRID" == fashion ]]; then
  add fashion/ptq4          "$RN --method ptq --bits 4"
  add fashion/lsq4          "$RN --method lsq --bits 4"
  add fashion/lsq2          "$RN --method lsq --bits 2"
  add fashion/diffq_l1_g16   "$RN --method diffq --penalty 1 --group-size 16 $DQ"
fi
if [[ "$GRID" == all || "$GRID" == fashion2 ]]; then
  # The bits' learning rate of the spec's reference (1e-2): bits fall slower.
  add fashion/diffq_l1_g16_blr01 "$RN --method diffq --penalty 1 --group-size 16 --bits-lr 0.01"
  add fashion/diffq_l5_g16_blr01 "$RN --method diffq --penalty 5 --group-size 16 --bits-lr 0.01"
  add fashion/diffq_l20_g16_blr01 "$RN --method diffq --penalty 20 --group-size 16 --bits-lr 0.01"
  add fashion/diffq_l10_g16_i6_blr01 "$RN --method diffq --penalty 10 --group-size 16 --init-bits 6 --bits-lr 0.01"
fi
if [[ "$GRID" == all || "$GRID" == fashion3 ]]; then
  # Quantize the small 16-channel convolutions too (min_size 0.001 MB = 262 elements).
  add fashion/diffq_l5_g16_blr01_ms001 "$RN --method diffq --penalty 5 --group-size 16 --bits-lr 0.01 --min-size 0.001"
  add fashion/qat2_ms001 "$RN --method qat --bits 2 --min-size 0.001"
fi
if [[ "$GRID" == all || "$GRID" == groups ]]; then
  for g in 0 1 4 8 16; do add groups/diffq_l50_g$g "$CN --method diffq --penalty 50 --group-size $g $DQ"; done
  add groups/fp32 "$CN --method fp32"
fi

# shellcheck source=run_grid.sh
source scripts/run_grid.sh
export -f run_one
export RUNS DIFFQ
xargs -a "$jobs_file" -d '\n' -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
rm -f "$jobs_file"
bash scripts/report.sh "$RUNS"
if [[ "$GRID" == all || "$GRID" == claims ]]; then
  for claim in equal_size group_size quant_noise_ipq lm_equal_size resnet_equal_size; do
    DIFFQ="$DIFFQ" JOBS="$JOBS" bash "scripts/$claim.sh" "$RUNS/$claim"
  done
fi
