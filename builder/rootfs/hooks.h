// The spec's hooks: scripts run inside the rootfs (apt, kernel, dracut) before it is packed.
#pragma once

#include <string>

#include "builder/spec.h"

namespace osup::build {

// Runs each spec hook in order: copied to DEST/tmp, executed as `chroot DEST /bin/sh -c
// /tmp/<hook>` in a private mount namespace with /proc, /sys and /dev mounted (they vanish
// with the namespace, so a crash never leaves host mounts inside DEST). Environment:
// OSUP_IMAGE_NAME, OSUP_IMAGE_VERSION, OSUP_IMAGE_ARCH.
void run_hooks(const Spec& spec, const std::string& dest);

}  // namespace osup::build
