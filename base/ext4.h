// The sizes an ext4 file system reports in its superblock, read from a device or image at
// an offset: what `osup status` shows for an unmounted data partition (statfs needs a mount).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace osup {

struct Ext4Usage {
  uint64_t size = 0;  // bytes in the file system's blocks
  uint64_t free = 0;  // bytes in free blocks
};

// nullopt when there is no ext4 superblock at `offset` (a blank partition, another file
// system); throws when the device cannot be read.
[[nodiscard]] std::optional<Ext4Usage> read_ext4_usage(const std::string& device, uint64_t offset);

}  // namespace osup
