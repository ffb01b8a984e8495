#include "format/verity_geometry.h"

#include <string>

#include "base/error.h"

namespace osup::verity {
namespace {

constexpr uint64_t kHashesPerBlock = kBlockSize / kDigestSize;  // 128: exactly fills a block

}  // namespace

uint64_t checked_blocks(uint64_t data_size) {
  if (data_size == 0 || data_size % kBlockSize != 0)
    fail("dm-verity data size " + std::to_string(data_size) +
         " is not a positive multiple of 4096 bytes; pad the image to whole 4 KiB blocks");
  return data_size / kBlockSize;
}

std::vector<Level> tree_levels(uint64_t data_blocks) {
  std::vector<Level> levels;
  for (uint64_t n = data_blocks; n > 1;) {
    n = (n + kHashesPerBlock - 1) / kHashesPerBlock;
    levels.push_back({0, n});
  }
  uint64_t offset = kTreeOffset;  // root-most level first
  for (auto it = levels.rbegin(); it != levels.rend(); ++it) {
    it->offset = offset;
    offset += it->blocks * kBlockSize;
  }
  return levels;
}

void check_salt(const Params& p) {
  if (p.salt.size() > kMaxSalt)
    fail("dm-verity salt of " + std::to_string(p.salt.size()) + " bytes is longer than 256");
}

}  // namespace osup::verity
