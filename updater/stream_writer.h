// Streams a payload into a partition with three stages overlapping: the caller's thread
// reads and decompresses, a second checks each block against the verity tree, a third
// writes with O_DIRECT. Memory is a fixed pool of aligned buffers, whatever the size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "base/progress.h"

namespace osup {

struct StreamTarget {
  int fd = -1;          // opened O_DIRECT where the filesystem allows it
  bool direct = false;  // whether writes must be block-aligned
  uint64_t offset = 0;  // partition start inside the disk
  uint64_t capacity = 0;
  std::string name;  // for errors: "root-b"
};

inline constexpr size_t kStreamChunk = 2 << 20;  // x kStreamBuffers: 8 MiB in flight
inline constexpr size_t kStreamBuffers = 4;

// `source` fills a buffer and returns the bytes produced (0 at the end). `check` sees every
// byte in order (verity) on its own thread. Returns the number of bytes written.
uint64_t stream_to_partition(const std::function<size_t(std::span<std::byte>)>& source,
                             const std::function<void(std::span<const std::byte>)>& check,
                             const StreamTarget& target, Progress* progress);

}  // namespace osup
