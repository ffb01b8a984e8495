// Writing a disk image to a USB stick or disk: only the image's data (holes are skipped),
// then a read-back check. Refuses mounted devices and the running system's own disk.
#pragma once

#include <string>

#include "base/progress.h"

namespace osup::build {

struct FlashOptions {
  bool yes = false;  // skip the confirmation question (required when stdin is not a terminal)
  ProgressMode progress = ProgressMode::automatic;
};

// Writes IMAGE to DEVICE (a block device, or a regular file that becomes a sparse copy),
// fsyncs, then reads the same extents back and compares their SHA-256 with the image's.
// Areas that are holes in the image are left as they were on a block device.
void flash(const std::string& image, const std::string& device, const FlashOptions& options);

}  // namespace osup::build
