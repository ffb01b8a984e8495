// Where the levels of a dm-verity hash tree sit on the hash device, shared by the tree
// builder and the checkers (format/verity.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "format/verity.h"

namespace osup::verity {

inline constexpr size_t kMaxSalt = 256;
inline constexpr uint64_t kTreeOffset = kBlockSize;  // the superblock fills the first hash block

struct Level {
  uint64_t offset;  // bytes from the start of the hash device
  uint64_t blocks;  // hash blocks in this level
};

// data_size / 4096; throws unless data_size is a positive multiple of 4096.
[[nodiscard]] uint64_t checked_blocks(uint64_t data_size);

// levels[0] is the level nearest the data. Like the kernel, a tree has as many levels as
// it takes to reach a single block; one data block needs none (its hash is the root).
[[nodiscard]] std::vector<Level> tree_levels(uint64_t data_blocks);

// Throws for a salt longer than the superblock holds (256 bytes).
void check_salt(const Params& p);

}  // namespace osup::verity
