// Writing a disk image to a USB stick or disk: only the image's data (holes are skipped),
// then a read-back check. Refuses mounted devices and the running system's own disk.
#pragma once

#include <cstdint>
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
struct FlashResult {
  uint64_t data_bytes = 0;   // written and read back (the image's data extents)
  uint64_t image_size = 0;   // the image file's size
  uint64_t target_size = 0;  // the device's size, or the regular file's size afterwards
};

// A regular file target keeps its size when it is larger than the image, like a disk would.
FlashResult flash(const std::string& image, const std::string& device, const FlashOptions& options);

// The one line `osup-build flash` prints when done, whatever the output is.
[[nodiscard]] std::string describe(const FlashResult& r, const std::string& image,
                                   const std::string& device);

}  // namespace osup::build
