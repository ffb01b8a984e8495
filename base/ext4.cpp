#include "base/ext4.h"

#include <fcntl.h>

#include <span>

#include "base/fd.h"

namespace osup {

std::optional<Ext4Usage> read_ext4_usage(const std::string& device, uint64_t offset) {
  // The superblock: 1024 bytes at 1024 into the file system (ext4 disk layout, "The Super Block").
  unsigned char sb[1024];
  UniqueFd fd = open_file(device, O_RDONLY);
  if (pread_full(fd.get(), std::as_writable_bytes(std::span(sb)), offset + 1024, device) !=
          sizeof sb ||
      sb[0x38] != 0x53 || sb[0x39] != 0xEF)  // s_magic 0xEF53
    return std::nullopt;
  auto le32 = [&](size_t o) {
    return static_cast<uint64_t>(sb[o]) | static_cast<uint64_t>(sb[o + 1]) << 8 |
           static_cast<uint64_t>(sb[o + 2]) << 16 | static_cast<uint64_t>(sb[o + 3]) << 24;
  };
  const uint64_t block = 1024ULL << le32(0x18);  // s_log_block_size
  const bool is64 = le32(0x60) & 0x80;           // INCOMPAT_64BIT: the _hi halves count
  const uint64_t blocks = le32(0x4) | (is64 ? le32(0x150) << 32 : 0);
  const uint64_t free_blocks = le32(0xC) | (is64 ? le32(0x158) << 32 : 0);
  return Ext4Usage{blocks * block, free_blocks * block};
}

}  // namespace osup
