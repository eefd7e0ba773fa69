#!/usr/bin/env bash
# Sanitizer and fuzzing check (part of CI).
#  1. builds the libraries, the tool and EVERY test suite with
#     AddressSanitizer + UBSan (gcc; LibTorch itself is not instrumented)
#     at -O1 (compiles as fast as the release build at -O3) and runs every
#     suite: one process per suite, the longest suites split into gtest
#     shards, longest first, JOBS at a time (an instrumented process takes
#     seconds to load LibTorch: one process per test, as ctest does, would
#     spend most of the time loading). With SANITIZE_CORE_ONLY=1, only the
#     torch-free core and its ctest (a few minutes).
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
SECONDS=0

# The allocator dominates an instrumented LibTorch process (every tensor is
# an ASan allocation): no allocation stacks in reports (the faulting access's
# stack is still printed), no fill of fresh blocks, a 64 MB quarantine
# (use-after-free of recently freed blocks is still caught). About 2x faster
# than ASan's defaults on the training tests.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:malloc_context_size=0:max_malloc_fill_size=0:quarantine_size_mb=64"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

if [[ "${SANITIZE_CORE_ONLY:-0}" == 1 ]]; then
  echo "== sanitizer build (ASan + UBSan): the torch-free core =="
  cmake -S "$ROOT" -B "$BUILD_ROOT/sanitize-core" -DDIFFQ_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDIFFQ_SANITIZE=ON -DDIFFQ_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$BUILD_ROOT/sanitize-core" -j"$JOBS"
  (cd "$BUILD_ROOT/sanitize-core" && ctest --output-on-failure -j"$JOBS")
else
  echo "== sanitizer build (ASan + UBSan, -O1): libraries, tool and every test suite =="
  cmake -S "$ROOT" -B "$BUILD_ROOT/sanitize" -DDIFFQ_CORE_ONLY=OFF -DDIFFQ_BUILD_EXAMPLES=OFF \
    -DDIFFQ_BUILD_BENCHMARKS=OFF -DDIFFQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" >/dev/null
  cmake --build "$BUILD_ROOT/sanitize" -j"$JOBS"
  echo "sanitizer build: $((SECONDS / 60)) min"
  bash "$ROOT/scripts/run_suites.sh" "$BUILD_ROOT/sanitize/tests" "$JOBS"
  echo "sanitizer build and suites: $((SECONDS / 60)) min"
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
echo "ci_sanitize: all checks passed ($((SECONDS / 60)) min)"
