#!/usr/bin/env bash
# Runs every GoogleTest suite of a build's tests/ folder, each suite as few
# processes as possible (not one per test as ctest does): under the
# sanitizers a process takes seconds to load LibTorch. The longest suites are
# split into gtest shards (GTEST_TOTAL_SHARDS / GTEST_SHARD_INDEX) so that
# JOBS processes stay busy to the end; jobs start longest first. Each job's
# log is kept beside its executable; a failing job's log is printed.
# Exits non-zero when any job fails. Usage: scripts/run_suites.sh TESTS_DIR [JOBS]
set -euo pipefail
TESTS_DIR="$(cd "$1" && pwd)"
JOBS="${2:-2}"

# Shards per suite (others: 1), by their cost under the sanitizers.
declare -A SHARDS=([test_cli]=6 [test_oneshot]=2 [test_train]=2 [test_distributed]=2)
# Start order: the costliest first.
ORDER=(test_cli test_distributed test_oneshot test_train)

jobs_file="$(mktemp)"
trap 'rm -f "$jobs_file"' EXIT
add_suite() {
  local name="$1" shards="${SHARDS[$1]:-1}"
  for ((i = 0; i < shards; ++i)); do echo "$name $i $shards" >> "$jobs_file"; done
}
mapfile -t suites < <(find "$TESTS_DIR" -maxdepth 1 -type f -executable -name 'test_*' ! -name '*.*' \
  ! -name test_pch_anchor -printf '%f\n' | sort)
[[ ${#suites[@]} -gt 0 ]] || { echo "run_suites: no test executables in $TESTS_DIR"; exit 1; }
for name in "${ORDER[@]}"; do
  if [[ -x "$TESTS_DIR/$name" ]]; then add_suite "$name"; fi
done
for name in "${suites[@]}"; do
  if [[ " ${ORDER[*]} " != *" $name "* ]]; then add_suite "$name"; fi
done

run_job() {
  local dir="$1" name="$2" index="$3" total="$4"
  local log="$dir/$name.shard$index.log" start=$SECONDS
  if (cd "$dir" && GTEST_TOTAL_SHARDS="$total" GTEST_SHARD_INDEX="$index" "./$name" > "$log" 2>&1); then
    echo "passed: $name shard $((index + 1))/$total ($(grep -Eo '[0-9]+ tests? from [0-9]+ test suites? ran' "$log" | tail -1), $((SECONDS - start)) s)"
  else
    echo "FAILED: $name shard $((index + 1))/$total"; tail -n 80 "$log"; return 1
  fi
}
export -f run_job
status=0
xargs -P "$JOBS" -L 1 bash -c 'run_job "$0" "$1" "$2" "$3"' "$TESTS_DIR" < "$jobs_file" || status=1
if [[ $status -ne 0 ]]; then echo "run_suites: some suites FAILED"; exit 1; fi
echo "run_suites: every suite passed ($(wc -l < "$jobs_file") processes)"
