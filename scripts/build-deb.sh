#!/usr/bin/env bash
# Builds the osup Debian package for one architecture and prints the .deb's path (the
# only thing on stdout; build output goes to stderr). Incremental: reuses the build dir.
#   scripts/build-deb.sh [x86_64|aarch64]
#   x86_64:  native build in $OSUP_BUILD_DIR (default build/): only osup and osup-build,
#            what the package holds (the test suites are not compiled for it)
#   aarch64: cross build with the "aarch64" CMake preset in build-aarch64/ (tests off);
#            needs the cross toolchain and :arm64 -dev packages (scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-x86_64}
jobs=${OSUP_JOBS:-$(nproc)}

case "$arch" in
  x86_64)
    build=${OSUP_BUILD_DIR:-build}
    [ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
    # What the package holds; cpack then packs them without building "all" (the test
    # suites), see CMAKE_SKIP_INSTALL_ALL_DEPENDENCY in CMakeLists.txt.
    cmake --build "$build" -j"$jobs" --target osup osup-build >&2
    cpack_args=(--config "$build/CPackConfig.cmake" -B "$build") ;;
  aarch64)
    if ! command -v aarch64-linux-gnu-g++ >/dev/null ||
       [ ! -e /usr/lib/aarch64-linux-gnu/pkgconfig/fdisk.pc ]; then
      echo "build-deb: the arm64 cross toolchain or :arm64 -dev packages are missing;" \
           "run scripts/install-deps.sh as root" >&2
      exit 1
    fi
    build=build-aarch64  # the preset's binaryDir (CMakePresets.json)
    [ -f "$build/CMakeCache.txt" ] || cmake --preset aarch64 >&2
    cmake --build --preset aarch64 -j"$jobs" >&2
    cpack_args=(--preset aarch64) ;;
  *) echo "build-deb: unknown arch '$arch'; use x86_64 or aarch64" >&2; exit 2 ;;
esac

# The same binaries give the same .deb (cpack takes its timestamps from SOURCE_DATE_EPOCH),
# so `osup-build image --incremental`, whose cache key includes the package, keeps hitting.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
# cpack names the file it wrote: "CPack: - package: /path/osup_<ver>_<arch>.deb generated."
out=$(cpack "${cpack_args[@]}" -G DEB)
deb=$(sed -n 's/^CPack: - package: \(.*\.deb\) generated\.$/\1/p' <<<"$out")
if [ ! -f "$deb" ]; then
  printf '%s\n' "$out" >&2
  echo "build-deb: cpack did not report a .deb for $arch (output above)" >&2
  exit 1
fi
echo "$deb"
