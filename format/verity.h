// dm-verity hash trees in the kernel's on-disk format v1, byte-identical with
// `veritysetup format`: 4 KiB data and hash blocks, SHA-256 with the salt prepended, a
// veritysetup superblock at offset 0 of the hash device and the tree from offset 4096,
// the level nearest the root stored first, every hash block zero-padded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/progress.h"
#include "format/sha256.h"
#include "format/uuid.h"

namespace osup::verity {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr size_t kDigestSize = 32;  // SHA-256

struct Params {
  uint64_t data_size = 0;     // bytes; must be a positive multiple of kBlockSize
  std::vector<uint8_t> salt;  // 32 bytes normally (at most 256)
  Uuid uuid;                  // superblock UUID
  bool operator==(const Params&) const = default;
};

// Salt and UUID derived from a seed (reproducible builds) or random when seed is empty.
// Throws when data_size is not a positive multiple of 4096.
[[nodiscard]] Params make_params(uint64_t data_size, std::string_view seed = {});

// Superblock block + all tree levels, in bytes (4096 alone for a single data block,
// whose hash is the root hash itself).
[[nodiscard]] uint64_t hash_device_size(uint64_t data_size);

// Builds the tree for p.data_size bytes of data_fd from data_offset and writes superblock +
// tree to hash_fd at hash_offset. Returns the root hash. Reads in big chunks while hashing
// on two threads; streams level 0 to hash_fd (memory: 32 MiB of buffers plus 1/128 of
// level 0). Does not fsync.
[[nodiscard]] Digest build(int data_fd, int hash_fd, const Params& p, Progress* progress = nullptr,
                           uint64_t data_offset = 0, uint64_t hash_offset = 0);

// Where level 0 (the data blocks' digests, packed) starts on the hash device. Throws for a
// one-block image, which has none.
[[nodiscard]] uint64_t level0_offset(uint64_t data_size);

// Parses and validates the superblock of a hash device.
// hash_offset (here and below): where the hash device starts inside hash_fd, so a tree
// can be read from a partition of a whole disk; data_offset likewise for the data.
[[nodiscard]] Params read_superblock(int hash_fd, uint64_t hash_offset = 0);

// Checks that the superblock matches p and that every hash block of every level chains up
// to root_hash. Reads only the hash device. Throws naming the level and block.
void verify_tree(int hash_fd, const Params& p, const Digest& root_hash, uint64_t hash_offset = 0);

class ParallelHasher;

// Checks data, fed in order in chunks of any size, against level 0 of a hash device already
// checked by verify_tree. Constant memory: level-0 hashes are read with pread as needed.
// update() hashes on the calling thread and a helper thread the verifier keeps (two cores:
// SHA-256 of every block is the install's biggest CPU cost).
class DataVerifier {
 public:
  // root_hash is only needed for a single-block image, which has no level 0 on disk (its
  // data block's hash is the root hash); other images are checked against level 0 alone.
  DataVerifier(int hash_fd, Params p, std::optional<Digest> root_hash = std::nullopt,
               uint64_t hash_offset = 0);
  ~DataVerifier();
  DataVerifier(const DataVerifier&) = delete;
  DataVerifier& operator=(const DataVerifier&) = delete;
  // Throws "data block N does not match its verity hash" at the first bad block.
  void update(std::span<const std::byte> data);
  // Throws if fewer than p.data_size bytes were fed.
  void finish();
  // Bytes verified good so far (up to the bad block after a mismatch).
  [[nodiscard]] uint64_t bytes_checked() const { return next_block_ * kBlockSize; }

 private:
  void check_blocks(const std::byte* blocks, uint64_t count);
  void load_expected(uint64_t first_block);

  int hash_fd_;
  Params p_;
  std::optional<Digest> root_hash_;
  uint64_t data_blocks_;
  uint64_t hash_offset_ = 0;
  uint64_t level0_offset_ = 0;
  uint64_t next_block_ = 0;         // index of the next block to check
  std::vector<std::byte> partial_;  // a block split across update() calls
  std::vector<uint8_t> expected_;   // a window of level-0 digests
  uint64_t expected_first_ = 0;     // block index of expected_[0]
  uint64_t expected_count_ = 0;     // digests held in expected_
  std::vector<uint8_t> actual_;     // scratch digests of the batch being checked
  std::unique_ptr<ParallelHasher> hasher_;
};

// Full check like `veritysetup verify`: verify_tree, then DataVerifier over data_fd.
void verify(int data_fd, int hash_fd, const Params& p, const Digest& root_hash,
            Progress* progress = nullptr, uint64_t data_offset = 0, uint64_t hash_offset = 0);

}  // namespace osup::verity
