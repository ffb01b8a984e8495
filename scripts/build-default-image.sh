#!/usr/bin/env bash
# Builds the default image, images/minimal.json (Debian 12 + osup), on a fresh Debian 12:
# installs the dependencies, builds osup and its .deb, makes a development signing key
# if there is none, and writes out/minimal-<version>-<arch>.{img,osup,manifest.json}.
#   scripts/build-default-image.sh [minimal|desktop] [x86_64|aarch64] [extra osup-build image options]
# "desktop" builds images/desktop.json instead (GNOME; about 1 GB of packages, see
# docs/desktop.md) into out/desktop-<version>-<arch>.*.
# The osup .deb comes from scripts/build-deb.sh: for aarch64 it is cross-built with the
# "aarch64" CMake preset in build-aarch64/ (see CMakePresets.json).
set -euo pipefail
cd "$(dirname "$0")/.."
image=minimal
case ${1:-} in minimal | desktop) image=$1; shift ;; esac
arch=${1:-x86_64}
shift || true
case "$arch" in
  x86_64|aarch64) ;;
  *) echo "build-default-image: unknown arch '$arch'; use x86_64 or aarch64 (after the image name minimal or desktop, if any)" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "build-default-image: must run as root (debootstrap, chroot); try: sudo $0" >&2
  exit 1
fi
./scripts/install-deps.sh

build=${OSUP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# The host build gives osup-build (and, for x86_64, the package's binaries): the two tools
# only, not the test suites (scripts/test.sh builds those).
cmake --build "$build" -j"$(nproc)" --target osup osup-build

deb=$(OSUP_BUILD_DIR="$build" ./scripts/build-deb.sh "$arch")

if [ ! -f keys/osup.key ]; then
  echo "build-default-image: creating a development signing key in keys/ (keep it out of git)" >&2
  "$build/builder/osup-build" keygen --out keys >/dev/null
fi
# --incremental: a second version (--version V) reuses the tree the hooks built.
"$build/builder/osup-build" image "images/$image.json" --key keys/osup.key --out out \
  --arch "$arch" --deb "$deb" --incremental "$@"
