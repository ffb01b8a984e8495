#!/usr/bin/env bash
# Installs what the tests need, builds everything, checks the style (scripts/lint.sh:
# clang-format, clang-tidy) and runs the whole test suite (CTest labels: unit,
# integration, qemu). Pass -L LABEL to run one tier, -LE qemu to skip the boots.
# The desktop image is built and checked without a boot (label desktop-rootfs); tiers
# too slow for CI run only when named with -L: desktop (the GNOME image under
# QEMU, scripts/test.sh -L desktop), powerloss (the crash-state campaign, -L powerloss),
# secureboot (qemu-tests/secureboot, -L secureboot), machine (restoring a machine from
# its machine file under QEMU, -L machine) and cross-aarch64 (the unit tier cross-built for
# arm64 and run under qemu-user, scripts/test-aarch64-unit.sh, -L cross-aarch64).
# The style checks run beside the tests at the lowest priority, so they use the CPU the
# tests leave idle (image builds waiting on the archive, the desktop root's download)
# without slowing the QEMU guests; their report follows the tests'. A style failure fails
# the run, after the tests (so they still report).
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
lint_log=$build/lint.log
nice -n 19 ./scripts/lint.sh "$build" >"$lint_log" 2>&1 &
lint_pid=$!
slow_tiers="desktop|powerloss|secureboot|machine|cross-aarch64"
# Unless a -L names what to run, the slow tiers are left out (joined to the caller's -LE,
# since CTest keeps only one exclusion regex).
args=() exclude="" named=0
while [ $# -gt 0 ]; do
  case $1 in
  -L | --label-regex) named=1; args+=("$1" "${2:?}"); shift 2 ;;
  -LE | --label-exclude) exclude+="${exclude:+|}${2:?}"; shift 2 ;;
  *) args+=("$1"); shift ;;
  esac
done
[ $named = 1 ] || exclude="^($slow_tiers)\$${exclude:+|}$exclude"
[ -z "$exclude" ] || args+=(-LE "$exclude")
tests=0
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "${args[@]}" || tests=$?
lint=0
wait "$lint_pid" || lint=$?
cat "$lint_log"
[ "$tests" -eq 0 ] || exit "$tests"
if [ "$lint" -ne 0 ]; then
  echo "test.sh: the tests passed, but scripts/lint.sh failed (see above)" >&2
  exit "$lint"
fi
