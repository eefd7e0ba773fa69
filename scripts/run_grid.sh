# Sourced by the experiment scripts: run_one "NAME|ARGS" trains one run of a
# grid into $RUNS/NAME with $DIFFQ (skipped when finished, resumed when
# interrupted), then runs $AFTER_RUN if set (e.g. a table rewrite).
run_one() {
  local name="${1%%|*}" args="${1#*|}"
  local out="$RUNS/$name"
  if [[ -f "$out/metrics.json" ]]; then echo "skip $name (done)"; return 0; fi
  mkdir -p "$out"
  echo "run  $name: diffq train $args"
  # shellcheck disable=SC2086
  if "$DIFFQ" train ${BASE:-} $args --out "$out" --resume > "$out/stdout.txt" 2> "$out/progress.txt"; then
    echo "done $name"
  else
    echo "FAILED $name (see $out/progress.txt)"
  fi
  if [[ -n "${AFTER_RUN:-}" ]]; then eval "$AFTER_RUN" || true; fi
}

# run_grid JOBS_FILE: runs every "NAME|ARGS" line of JOBS_FILE, $JOBS at a
# time, deletes the file, then runs $AFTER_RUN once more.
run_grid() {
  export -f run_one
  export RUNS DIFFQ BASE AFTER_RUN
  xargs -a "$1" -d '\n' -P "${JOBS:-2}" -I{} bash -c 'run_one "$@"' _ {}
  rm -f "$1"
  if [[ -n "${AFTER_RUN:-}" ]]; then eval "$AFTER_RUN"; fi
}
