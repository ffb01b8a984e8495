#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan, library instrumented too) and runs
# each for a short time. A crash, leak or sanitizer report fails the run.
#   scripts/fuzz-smoke.sh BUILD_DIR [SECONDS]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz-smoke.sh BUILD_DIR [SECONDS]}
secs=${2:-20}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
CC=clang CXX=clang++ cmake -S "$src" -B "$build" -DOSUP_BUILD_FUZZERS=ON -DOSUP_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS=$flags" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j"$(nproc)" --target manifest_fuzz bundle_fuzz >/dev/null
for f in manifest_fuzz bundle_fuzz; do
  corpus="$build/corpus-$f"
  mkdir -p "$corpus"
  # The bundle fuzzer starts from real signed bundles so mutations get past the signature.
  if [ "$f" = bundle_fuzz ]; then OSUP_FUZZ_SEED_DIR="$corpus" "$build/format/$f" -runs=0 >/dev/null 2>&1 || true; fi
  log="$build/$f.log"
  status=0
  "$build/format/$f" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$build/" \
    "$corpus" >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  echo "$f: ${secs}s, $runs inputs, exit $status"
  if [ "$status" -ne 0 ]; then
    grep -E "ERROR|SUMMARY|==[0-9]+==" "$log" | head -20 >&2
    exit 1
  fi
done
