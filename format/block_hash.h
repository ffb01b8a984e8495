// SHA-256(salt || block) of many equal-sized blocks: the dm-verity block hash (format v1).
// On x86-64 CPUs with the SHA extensions, blocks are hashed three at a time with their
// rounds interleaved: one message keeps the SHA unit waiting for each round's result, several
// keep it busy (the Linux kernel hashes dm-verity blocks two at a time since 6.11). Measured
// on the 2-core AMD EPYC build VM: 1.8x OpenSSL's one-at-a-time SHA-NI (3 lanes; 2 gave
// 1.5x, 4 spilled more registers: 1.65x). Elsewhere, OpenSSL one block at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

struct evp_md_ctx_st;

namespace osup {

class BlockHash {
 public:
  // block_size: every block's length in bytes, at least 64.
  BlockHash(std::span<const uint8_t> salt, size_t block_size);
  ~BlockHash();
  BlockHash(const BlockHash&) = delete;
  BlockHash& operator=(const BlockHash&) = delete;

  // Digest of one block into out[0..32).
  void hash(const std::byte* block, uint8_t* out);
  // Packed digests of `count` consecutive blocks into out[0..32*count).
  void hash_many(const std::byte* blocks, uint64_t count, uint8_t* out);

  // Whether the interleaved SHA extension code runs here (false: OpenSSL).
  [[nodiscard]] static bool interleaved();

 private:
  void openssl_hash(const std::byte* block, uint8_t* out);
  template <int N>
  void hash_lanes(const std::byte* blocks, uint64_t first, uint8_t* out);  // N at once

  std::vector<uint8_t> salt_;
  size_t block_size_;
  // The salt's whole 64-byte chunks are hashed once; the rest starts every message.
  uint32_t prefix_state_[8];
  std::vector<uint8_t> salt_tail_;
  evp_md_ctx_st* ctx_ = nullptr;  // only without the SHA extensions
};

}  // namespace osup
