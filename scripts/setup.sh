#!/usr/bin/env bash
# Installs every dependency of the project from Debian packages.
# Runs as root on a fresh machine; idempotent, and quick when all is there.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config
  # framework and BLAS
  libtorch-dev libopenblas0-pthread
  # distributed training: the Gloo headers c10d's ProcessGroupGloo includes
  libgloo-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # libraries used by the code
  nlohmann-json3-dev libcli11-dev libzstd-dev libxxhash-dev zlib1g-dev libjemalloc-dev
  # fuzzing and sanitizers (clang's libFuzzer runtime)
  clang-14 libclang-rt-14-dev
  # data and plots
  dataset-fashion-mnist bible-kjv gnuplot-nox
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PACKAGES[@]} packages present"
fi
