#!/usr/bin/env bash
# Builds the default image, images/minimal.json (Debian 12 + osup), on a fresh Debian 12:
# installs the dependencies, builds osup and its .deb, makes a development signing key
# if there is none, and writes out/minimal-<version>-<arch>.{img,osup,manifest.json}.
#   scripts/build-default-image.sh [x86_64|aarch64] [extra osup-build image options]
# aarch64 needs the osup .deb for arm64: built with the "aarch64" CMake preset's cross
# toolchain (see CMakePresets.json), or pass --deb yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-x86_64}
shift || true

if [ "$(id -u)" -ne 0 ]; then
  echo "build-default-image: must run as root (debootstrap, chroot); try: sudo $0" >&2
  exit 1
fi
./scripts/install-deps.sh

build=${OSUP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# cpack installs after building "all", so build everything here, in parallel.
cmake --build "$build" -j"$(nproc)"

deb_args=()
case "$arch" in
  x86_64)
    (cd "$build" && cpack -G DEB >/dev/null)
    deb_args=(--deb "$(ls -t "$build"/osup_*_amd64.deb | head -n1)") ;;
  aarch64)
    if ls build-aarch64/osup_*_arm64.deb >/dev/null 2>&1; then
      deb_args=(--deb "$(ls -t build-aarch64/osup_*_arm64.deb | head -n1)")
    else
      echo "build-default-image: no arm64 osup .deb in build-aarch64/; the image is built without osup" >&2
    fi ;;
  *) echo "build-default-image: unknown arch '$arch'; use x86_64 or aarch64" >&2; exit 2 ;;
esac

if [ ! -f keys/osup.key ]; then
  echo "build-default-image: creating a development signing key in keys/ (keep it out of git)" >&2
  "$build/builder/osup-build" keygen --out keys >/dev/null
fi
"$build/builder/osup-build" image images/minimal.json --key keys/osup.key --out out \
  --arch "$arch" "${deb_args[@]}" "$@"
