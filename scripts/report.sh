#!/usr/bin/env bash
# Tables and plots of docs/results from the runs of scripts/sweep.sh:
#   bash scripts/report.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs}"
DIFFQ="${DIFFQ:-build/tools/diffq}"
OUT=docs/results
mkdir -p "$OUT"
for grid in fashion groups lm; do
  [[ -d "$RUNS/$grid" ]] || continue
  "$DIFFQ" summarize "$RUNS/$grid" --md "$OUT/$grid.md" --dat "$OUT/$grid.dat" --title "$grid" || true
done
# Bits per layer of a DiffQ model.
for cand in fashion/diffq_l5_g16_blr01 fashion/diffq_l50_g16 fashion/diffq_l5_g16; do
  if [[ -f "$RUNS/$cand/model.diffq" ]]; then
    "$DIFFQ" inspect "$RUNS/$cand/model.diffq" --dat > "$OUT/bits_per_layer.dat"
    "$DIFFQ" inspect "$RUNS/$cand/model.diffq" > "$OUT/bits_per_layer.txt"
    echo "# from $cand" >> "$OUT/bits_per_layer.dat"
    break
  fi
done
if command -v gnuplot >/dev/null; then
  (cd "$OUT" && gnuplot ../../scripts/plots.gnuplot)
fi
echo "report: $OUT"
