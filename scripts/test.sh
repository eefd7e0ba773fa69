#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS="${JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS")
bash scripts/check_consumer.sh build
if [ -f scripts/ci_sanitize.sh ]; then bash scripts/ci_sanitize.sh; fi
echo "test.sh: all tests passed"
