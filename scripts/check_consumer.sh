#!/usr/bin/env bash
# Installs the library from build dir $1 into a temporary prefix and builds
# and runs a tiny consumer project with find_package(diffq).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
PREFIX="$(mktemp -d)"
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX/install" > /dev/null
cmake -S examples/consumer -B "$PREFIX/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX/install" > /dev/null
cmake --build "$PREFIX/consumer" -j"$(nproc)" > /dev/null
"$PREFIX/consumer/consumer"
