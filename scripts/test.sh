#!/usr/bin/env bash
# Installs what the tests need, builds everything and runs the whole test suite
# (CTest labels: unit, integration, qemu). Pass -L LABEL to run one tier, -LE qemu to skip the boots.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  ./scripts/install-deps.sh
else
  sudo ./scripts/install-deps.sh
fi
build=${OSUP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
