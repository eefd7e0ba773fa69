#!/usr/bin/env bash
# Sanitizer and fuzzing check.
#  1. builds the torch-free core with AddressSanitizer + UBSan (gcc) and
#     runs its ctest; with SANITIZE_FULL=1, the libraries, the tool and
#     EVERY test suite instead (LibTorch itself is not instrumented), each
#     suite run as one process (about 100 min of build and tests on two
#     busy cores: too long for CI's 90 minutes on top of the release build,
#     so CI runs the core and this is run by hand before a release);
#  2. builds the libFuzzer reader target with clang++-14 and fuzzes it for
#     FUZZ_RUNS executions (default 10^6; at most FUZZ_SECONDS, default 900)
#     within a 512 MB RSS cap (its loads cap decoded memory at 64 MB) on a
#     freshly generated seed corpus (version-2 files of every encoding, kind
#     and integer dtype) plus the version-1 fixture files.
# Exits non-zero on any failure. Usage: scripts/ci_sanitize.sh [build-root]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_ROOT="${1:-$ROOT/build-ci}"
JOBS="${JOBS:-2}"
FUZZ_SECONDS="${FUZZ_SECONDS:-900}"
FUZZ_RUNS="${FUZZ_RUNS:-1000000}"

if [[ "${SANITIZE_FULL:-0}" != 1 ]]; then
  echo "== sanitizer build (ASan + UBSan): the torch-free core =="
  SCOPE=(-DDIFFQ_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
else
  echo "== sanitizer build (ASan + UBSan): libraries, tool and every test suite =="
  SCOPE=(-DDIFFQ_CORE_ONLY=OFF -DDIFFQ_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release)
fi
cmake -S "$ROOT" -B "$BUILD_ROOT/sanitize" "${SCOPE[@]}" -DDIFFQ_SANITIZE=ON \
  -DDIFFQ_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD_ROOT/sanitize" -j"$JOBS"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if [[ "${SANITIZE_FULL:-0}" != 1 ]]; then
  (cd "$BUILD_ROOT/sanitize" && ctest --output-on-failure -j"$JOBS")
else
  # Each suite runs as ONE process (all its tests), not one per test as
  # ctest does: an instrumented process takes seconds to load LibTorch, and
  # there are hundreds of tests. The log of a failing suite is printed.
  run_suite() {
    local exe="$1" log="$1.sanitize.log"
    if (cd "$(dirname "$exe")" && "$exe" > "$log" 2>&1); then
      echo "passed: $(basename "$exe") ($(grep -Eo '[0-9]+ tests? from [0-9]+ test suites? ran' "$log" | tail -1))"
    else
      echo "FAILED: $(basename "$exe")"; tail -n 80 "$log"; return 1
    fi
  }
  export -f run_suite
  find "$BUILD_ROOT/sanitize/tests" -maxdepth 1 -type f -executable -name 'test_*' ! -name '*.*' \
    ! -name test_pch_anchor | sort | xargs -P "$JOBS" -I{} bash -c 'run_suite {}'
fi

echo "== fuzzer build (clang++-14, libFuzzer) =="
cmake -S "$ROOT" -B "$BUILD_ROOT/fuzz" -DDIFFQ_CORE_ONLY=ON -DDIFFQ_FUZZ=ON \
  -DDIFFQ_BUILD_TESTS=OFF -DDIFFQ_BUILD_BENCHMARKS=OFF \
  -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_ROOT/fuzz" -j"$JOBS" --target fuzz_reader make_fuzz_corpus

CORPUS="$BUILD_ROOT/fuzz/corpus"
rm -rf "$CORPUS" "$BUILD_ROOT/fuzz/artifacts"
mkdir -p "$CORPUS" "$BUILD_ROOT/fuzz/artifacts"
"$BUILD_ROOT/fuzz/fuzz/make_fuzz_corpus" "$CORPUS"
# The committed version-1 files too, so that the v1 reading paths are fuzzed.
cp "$ROOT"/tests/format/fixtures/*.diffq "$CORPUS"/
echo "== fuzzing load_from_memory: ${FUZZ_RUNS} runs (at most ${FUZZ_SECONDS}s), RSS under 512 MB =="
"$BUILD_ROOT/fuzz/fuzz/fuzz_reader" -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=512 \
  -timeout=10 -print_final_stats=1 -artifact_prefix="$BUILD_ROOT/fuzz/artifacts/" "$CORPUS"
echo "ci_sanitize: all checks passed"
