// Filling a root filesystem tree from the spec's source: a tarball, a directory or
// debootstrap. The overlay and hooks are separate steps (overlay.h, hooks.h).
#pragma once

#include <string>

#include "builder/spec.h"

namespace osup::build {

// Fills the empty directory DEST (created if missing) from spec.rootfs.
void populate_rootfs(const Spec& spec, const std::string& dest);

}  // namespace osup::build
