#!/usr/bin/env bash
# Installs what the tests need, builds everything, checks the style (scripts/lint.sh:
# clang-format, clang-tidy) and runs the whole test suite (CTest labels: unit,
# integration, qemu). Pass -L LABEL to run one tier, -LE qemu to skip the boots.
# A style failure fails the run, after the tests (so they still report).
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
lint=0
./scripts/lint.sh "$build" || lint=$?
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
if [ "$lint" -ne 0 ]; then
  echo "test.sh: the tests ran, but scripts/lint.sh failed (see above)" >&2
  exit "$lint"
fi
