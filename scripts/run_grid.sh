# Sourced by the experiment scripts: run_one "NAME|ARGS" trains one run of a
# grid into $RUNS/NAME with $DIFFQ (skipped when finished, resumed when
# interrupted), then runs $AFTER_RUN if set (e.g. a table rewrite). A run
# that starts from another run of the same grid (`--init $RUNS/OTHER/...`)
# waits until OTHER has finished (or failed): queue the runs a grid starts
# from before the runs that start from them.
run_one() {
  local name="${1%%|*}" args="${1#*|}"
  local out="$RUNS/$name"
  if [[ -f "$out/metrics.json" ]]; then echo "skip $name (done)"; return 0; fi
  if [[ "$args" =~ --init\ ${RUNS}/([^/ ]+)/ ]]; then
    local from="$RUNS/${BASH_REMATCH[1]}"
    while [[ ! -f "$from/metrics.json" && ! -f "$from/FAILED" ]]; do sleep 20; done
    if [[ ! -f "$from/metrics.json" ]]; then
      echo "FAILED $name (the run it starts from, $from, failed)"
      mkdir -p "$out" && touch "$out/FAILED"
      return 0
    fi
  fi
  mkdir -p "$out"
  rm -f "$out/FAILED"
  echo "run  $name: diffq train $args"
  # shellcheck disable=SC2086
  if "$DIFFQ" train ${BASE:-} $args --out "$out" --resume > "$out/stdout.txt" 2> "$out/progress.txt"; then
    echo "done $name"
  else
    touch "$out/FAILED"
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
