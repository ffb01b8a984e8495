// The three-stage streaming writer: every byte reaches the partition in order at its
// offset, the check sees exactly those bytes, and a failure in any stage stops the rest.
#include "updater/stream_writer.h"

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "base/error.h"
#include "base/fd.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

using namespace osup;

namespace {

// A source that hands out `data` in pieces of varying sizes, as a decompressor does.
struct PieceSource {
  const std::string& data;
  size_t at = 0;
  std::mt19937 rng{5};
  size_t operator()(std::span<std::byte> buf) {
    size_t n = std::min({buf.size(), data.size() - at, static_cast<size_t>(rng() % 300000 + 1)});
    std::memcpy(buf.data(), data.data() + at, n);
    at += n;
    return n;
  }
};

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace

TEST_CASE("stream_to_partition writes every byte at the partition offset", "[unit]") {
  test::TempDir dir;
  const std::string disk = dir / "disk";
  const uint64_t offset = 3 << 20;
  // Not a multiple of the chunk size, so the last chunk is short.
  const std::string data = random_bytes(3 * kStreamChunk + 123ull * 4096, 1);
  UniqueFd fd = open_file(disk, O_RDWR | O_CREAT | O_TRUNC);
  REQUIRE(::ftruncate(fd.get(), 64 << 20) == 0);
  Sha256 seen;
  uint64_t seen_bytes = 0;
  PieceSource src{data};
  uint64_t n = stream_to_partition(
      std::ref(src),
      [&](std::span<const std::byte> b) {
        seen.update(b);
        seen_bytes += b.size();
      },
      StreamTarget{fd.get(), false, offset, 32 << 20, "root-b"}, nullptr);
  CHECK(n == data.size());
  CHECK(seen_bytes == data.size());
  CHECK(seen.finish() == sha256(data));
  std::string back(data.size(), '\0');
  REQUIRE(pread_full(fd.get(), std::as_writable_bytes(std::span(back)), offset, disk) ==
          back.size());
  CHECK(back == data);
  // Nothing before the partition was touched.
  std::string before(offset, '\0'), zeros(offset, '\0');
  REQUIRE(pread_full(fd.get(), std::as_writable_bytes(std::span(before)), 0, disk) == offset);
  CHECK(before == zeros);
}

TEST_CASE("stream_to_partition refuses more data than the partition holds", "[unit]") {
  test::TempDir dir;
  UniqueFd fd = open_file(dir / "disk", O_RDWR | O_CREAT | O_TRUNC);
  const std::string data = random_bytes(6 << 20, 2);
  PieceSource src{data};
  CHECK_THROWS_WITH(stream_to_partition(
                        std::ref(src), [](std::span<const std::byte>) {},
                        StreamTarget{fd.get(), false, 0, 5 << 20, "root-b"}, nullptr),
                    Catch::Contains("larger than partition root-b"));
}

TEST_CASE("a failing check stops the stream before bad data lands", "[unit]") {
  test::TempDir dir;
  UniqueFd fd = open_file(dir / "disk", O_RDWR | O_CREAT | O_TRUNC);
  const std::string data = random_bytes(5 * kStreamChunk, 3);
  PieceSource src{data};
  uint64_t checked = 0;
  CHECK_THROWS_WITH(stream_to_partition(
                        std::ref(src),
                        [&](std::span<const std::byte> b) {
                          checked += b.size();
                          if (checked > 2 * kStreamChunk) fail("data block 2048 does not match");
                        },
                        StreamTarget{fd.get(), false, 0, 64 << 20, "root-b"}, nullptr),
                    Catch::Contains("data block 2048"));
  // The chunk that failed its check (the third) was never written.
  CHECK(fd_size(fd.get(), "disk") <= 2 * kStreamChunk);
}

TEST_CASE("a failing source stops the writer and the checker", "[unit]") {
  test::TempDir dir;
  UniqueFd fd = open_file(dir / "disk", O_RDWR | O_CREAT | O_TRUNC);
  int calls = 0;
  auto source = [&](std::span<std::byte> buf) -> size_t {
    if (++calls > 3) fail("payload 'root': sha256 mismatch");
    std::memset(buf.data(), 7, buf.size());
    return buf.size();
  };
  CHECK_THROWS_WITH(stream_to_partition(
                        source, [](std::span<const std::byte>) {},
                        StreamTarget{fd.get(), false, 0, 64 << 20, "root-b"}, nullptr),
                    Catch::Contains("sha256 mismatch"));
}
