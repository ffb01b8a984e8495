#include "format/delta.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "base/error.h"

using namespace osup;
using Catch::Matchers::Contains;

namespace {

constexpr size_t kB = delta::kBlock;

class VectorBlocks : public delta::SourceBlocks {
 public:
  explicit VectorBlocks(std::vector<std::byte> d) : data(std::move(d)) {}
  [[nodiscard]] uint64_t block_count() const override { return data.size() / kB; }
  void read(uint64_t first, uint64_t count, std::byte* out) override {
    std::memcpy(out, data.data() + first * kB, count * kB);
    reads += count;
  }
  std::vector<std::byte> data;
  uint64_t reads = 0;
};

std::vector<std::byte> random_blocks(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n * kB);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

std::string encode(const std::function<void(delta::RootOpWriter&)>& ops) {
  std::string out;
  delta::RootOpWriter w([&](std::span<const std::byte> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  });
  ops(w);
  w.finish();
  return out;
}

std::vector<std::byte> decode(const std::string& stream, delta::SourceBlocks& src, uint64_t blocks,
                              size_t chunk_blocks = 3) {
  size_t pos = 0;
  delta::RootOpReader r(
      [&](std::span<std::byte> buf) {
        size_t n = std::min(buf.size(), stream.size() - pos);
        std::memcpy(buf.data(), stream.data() + pos, n);
        pos += n;
        return n;
      },
      src, blocks);
  std::vector<std::byte> out;
  std::vector<std::byte> buf(chunk_blocks * kB);
  for (size_t n; (n = r.read(buf)) > 0;)
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
  return out;
}

}  // namespace

TEST_CASE("root block operations round-trip: copy, literal, zero", "[unit]") {
  VectorBlocks src(random_blocks(10, 1));
  const auto lit = random_blocks(2, 2);
  const std::string stream = encode([&](delta::RootOpWriter& w) {
    w.copy(4, 3);
    w.literal(lit);
    w.zero(2);
    w.copy(0, 1);
  });
  std::vector<std::byte> want;
  want.insert(want.end(), src.data.begin() + 4 * kB, src.data.begin() + 7 * kB);
  want.insert(want.end(), lit.begin(), lit.end());
  want.insert(want.end(), 2 * kB, std::byte{0});
  want.insert(want.end(), src.data.begin(), src.data.begin() + kB);
  for (size_t chunk : {1, 3, 64}) CHECK(decode(stream, src, 8, chunk) == want);
}

TEST_CASE("damaged operation streams are refused with one line", "[unit]") {
  VectorBlocks src(random_blocks(10, 3));
  const auto lit = random_blocks(3, 4);
  const std::string good = encode([&](delta::RootOpWriter& w) {
    w.copy(0, 5);
    w.literal(lit);
  });
  SECTION("truncated") {
    CHECK_THROWS_WITH(decode(good.substr(0, good.size() / 2), src, 8), Contains("truncated"));
    CHECK_THROWS_WITH(decode("", src, 8), Contains("truncated"));
  }
  SECTION("a flipped byte") {
    for (size_t at : {size_t{0}, good.size() / 2, good.size() - 1}) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0x40);
      CHECK_THROWS_AS(decode(bad, src, 8), Error);
    }
  }
  SECTION("fewer blocks than the manifest says") {
    CHECK_THROWS_WITH(decode(good, src, 9), Contains("truncated"));
  }
  SECTION("more blocks than the manifest says") {
    CHECK_THROWS_WITH(decode(good, src, 7), Contains("corrupt"));
  }
  SECTION("copies beyond the source") {
    VectorBlocks small(random_blocks(4, 5));
    CHECK_THROWS_WITH(decode(good, small, 8), Contains("made for another source"));
  }
}

TEST_CASE("delta header round-trips and is strict", "[unit]") {
  delta::Header h;
  h.source_version = "1.0.0";
  h.source_root_hash = std::string(64, 'a');
  h.source_root_size = uint64_t{4096} * 10;
  h.manifest = {0, 100};
  h.signature = {100, 64};
  h.files.push_back({PayloadKind::kernel, delta::FileMethod::same, std::string(64, 'b'), {}});
  h.files.push_back(
      {PayloadKind::initrd, delta::FileMethod::zstd_patch, std::string(64, 'c'), {164, 9}});
  h.root = {173, 1000};
  h.root_sha256 = std::string(64, 'd');
  const delta::Header back = delta::Header::parse(h.to_json());
  CHECK(back.to_json() == h.to_json());
  REQUIRE(back.file(PayloadKind::initrd));
  CHECK(back.file(PayloadKind::initrd)->method == delta::FileMethod::zstd_patch);
  std::string j = h.to_json();
  CHECK_THROWS_WITH(delta::Header::parse(j.replace(j.find("\"format\": 1"), 11, "\"format\": 2")),
                    Contains("use the full bundle"));
}
