// The debootstrap rootfs source: a fresh Debian, kept as a tarball so the next build with the
// same parameters only unpacks it.
#pragma once

#include <string>

#include "base/arch.h"
#include "builder/spec.h"

namespace osup::build {

// Fills the empty directory DEST with the bootstrap D describes for ARCH: extracted from
// debootstrap_cache_path when it is there, else run (then stored there; a failure to store
// only warns). A foreign ARCH needs qemu-user-static registered with binfmt_misc.
void debootstrap(const DebootstrapSource& d, Arch arch, const std::string& dest);

// Where debootstrap keeps (or finds) the finished bootstrap for D on ARCH:
// <cache>/debootstrap/<suite>-<debian arch>-<first 16 hex of the parameters' SHA-256>.tar.zst,
// <cache> being D's own cache folder, else cache_root() (builder/rootfs/cache.h).
[[nodiscard]] std::string debootstrap_cache_path(const DebootstrapSource& d, Arch arch);

}  // namespace osup::build
