// The dm-verity block hash, interleaved SHA extension code or not, against OpenSSL's
// SHA-256 of salt || block.
#include "format/block_hash.h"

#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "format/sha256.h"

using namespace osup;

TEST_CASE("BlockHash is SHA-256(salt || block) for any salt, block size and count", "[unit]") {
  INFO("interleaved SHA extension code: " << BlockHash::interleaved());
  std::mt19937 rng(7);
  // Salt lengths around the 64-byte chunk and padding edges; block sizes whose last chunk
  // takes the padding alone or needs one more; counts that leave 0, 1 or 2 blocks after
  // the groups hashed together.
  for (size_t block_size : {size_t{64}, size_t{100}, size_t{4096}, size_t{4096 + 55}}) {
    for (size_t salt_len : {0, 1, 8, 31, 32, 55, 56, 63, 64, 65, 100, 128, 200, 256}) {
      std::vector<uint8_t> salt(salt_len);
      for (auto& b : salt) b = static_cast<uint8_t>(rng());
      std::vector<std::byte> data(block_size * 7);
      for (auto& b : data) b = static_cast<std::byte>(rng());
      BlockHash h(salt, block_size);
      for (uint64_t count = 1; count <= 7; ++count) {
        CAPTURE(block_size, salt_len, count);
        std::vector<uint8_t> got(32 * count);
        h.hash_many(data.data(), count, got.data());
        for (uint64_t i = 0; i < count; ++i) {
          Sha256 want;
          want.update(std::as_bytes(std::span(salt)));
          want.update(std::span(data.data() + i * block_size, block_size));
          CHECK(to_hex(std::span(got.data() + 32 * i, 32)) == to_hex(want.finish()));
        }
      }
      uint8_t one[32];
      h.hash(data.data() + block_size, one);
      std::vector<uint8_t> many(64);
      h.hash_many(data.data(), 2, many.data());
      CHECK(std::equal(one, one + 32, many.data() + 32));
    }
  }
  CHECK_THROWS_WITH(BlockHash({}, 63), Catch::Contains("63"));
}
