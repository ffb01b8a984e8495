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
  std::span<const std::byte> view(const std::vector<delta::BlockRange>& ranges) override {
    viewed.clear();
    for (const auto& r : ranges)
      viewed.insert(viewed.end(), data.begin() + static_cast<ptrdiff_t>(r.first * kB),
                    data.begin() + static_cast<ptrdiff_t>((r.first + r.count) * kB));
    return viewed;
  }
  std::vector<std::byte> data, viewed;
  uint64_t reads = 0;
};

std::vector<std::byte> random_blocks(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n * kB);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

delta::RootShape shape_of(const delta::RootPlan& p, uint64_t source_blocks) {
  delta::RootShape s;
  s.source_blocks = source_blocks;
  for (const auto& op : p.ops) {
    s.new_blocks += op.count;
    if (op.kind == delta::OpKind::literal) s.literal_blocks += op.count;
  }
  for (const auto& r : p.reference) s.reference_blocks += r.count;
  return s;
}

std::vector<std::byte> assemble(const delta::RootPlan& plan, std::span<const std::byte> literals,
                                delta::SourceBlocks& src, size_t chunk_blocks) {
  delta::RootAssembler r(plan, literals, src);
  std::vector<std::byte> out, buf(chunk_blocks * kB);
  for (size_t n; (n = r.read(buf)) > 0;)
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
  return out;
}

// A plan that copies, takes literals, zeroes and copies again, with a reference.
delta::RootPlan sample_plan() {
  delta::RootPlan p;
  p.reference = {{1, 2}, {7, 3}};
  p.ops = {{delta::OpKind::copy, 3, 4},
           {delta::OpKind::literal, 2, 0},
           {delta::OpKind::zero, 2, 0},
           {delta::OpKind::copy, 1, 0}};
  return p;
}

}  // namespace

TEST_CASE("root plans round-trip: copy, literal, zero, reference", "[unit]") {
  VectorBlocks src(random_blocks(10, 1));
  const auto lit = random_blocks(2, 2);
  const delta::RootPlan plan = sample_plan();
  const std::string ops = delta::encode_ops(plan);
  const delta::RootPlan back = delta::decode_ops(bytes(ops), shape_of(plan, 10));
  CHECK(back.ops == plan.ops);
  CHECK(back.reference == plan.reference);
  std::vector<std::byte> want;
  want.insert(want.end(), src.data.begin() + 4 * kB, src.data.begin() + 7 * kB);
  want.insert(want.end(), lit.begin(), lit.end());
  want.insert(want.end(), 2 * kB, std::byte{0});
  want.insert(want.end(), src.data.begin(), src.data.begin() + kB);
  for (size_t chunk : {1, 3, 64}) CHECK(assemble(back, lit, src, chunk) == want);
  CHECK(src.reads == uint64_t{3} * 4);  // 3 runs of 4 copied blocks: only copies read the source
}

TEST_CASE("literal blocks compress against the source's reference blocks", "[unit]") {
  VectorBlocks src(random_blocks(64, 7));
  // New blocks: reference content shifted by 100 bytes (as erofs metadata shifts).
  std::vector<std::byte> lit(16 * kB);
  std::memcpy(lit.data(), src.data.data() + 8 * kB + 100, lit.size());
  const std::vector<delta::BlockRange> ref = {{8, 17}};
  const std::string with = delta::compress_literals(lit, src.view(ref));
  const std::string without = delta::compress_literals(lit, {});
  CHECK(with.size() * 20 < without.size());  // random data: only the reference helps
  std::vector<std::byte> out(lit.size());
  delta::decompress_literals(bytes(with), src.view(ref), out);
  CHECK(out == lit);
  // Other reference bytes: the frame's checksum refuses the result.
  CHECK_THROWS_WITH(delta::decompress_literals(bytes(with), src.view({{30, 17}}), out),
                    Contains("corrupt"));
  std::vector<std::byte> small(lit.size() - kB);
  CHECK_THROWS_WITH(delta::decompress_literals(bytes(with), src.view(ref), small),
                    Contains("corrupt"));
}

TEST_CASE("damaged operation lists are refused with one line", "[unit]") {
  const delta::RootPlan plan = sample_plan();
  const std::string good = delta::encode_ops(plan);
  const delta::RootShape shape = shape_of(plan, 10);
  SECTION("truncated") {
    CHECK_THROWS_WITH(delta::decode_ops(bytes(good.substr(0, good.size() / 2)), shape),
                      Contains("corrupt"));
    CHECK_THROWS_WITH(delta::decode_ops({}, shape), Contains("corrupt"));
  }
  SECTION("a flipped byte") {
    for (size_t at = 0; at < good.size(); ++at) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0x40);
      CHECK_THROWS_AS(delta::decode_ops(bytes(bad), shape), Error);
    }
  }
  SECTION("fewer or more blocks than the manifest says") {
    auto s = shape;
    s.new_blocks += 1;
    CHECK_THROWS_WITH(delta::decode_ops(bytes(good), s), Contains("truncated"));
    s.new_blocks -= 2;
    CHECK_THROWS_WITH(delta::decode_ops(bytes(good), s), Contains("corrupt"));
  }
  SECTION("counts that disagree with the header") {
    auto s = shape;
    s.literal_blocks += 1;
    CHECK_THROWS_WITH(delta::decode_ops(bytes(good), s), Contains("literal"));
    s = shape;
    s.reference_blocks -= 1;
    CHECK_THROWS_WITH(delta::decode_ops(bytes(good), s), Contains("reference"));
  }
  SECTION("copies or references beyond the source") {
    auto s = shape;
    s.source_blocks = 6;
    CHECK_THROWS_WITH(delta::decode_ops(bytes(good), s), Contains("made for another source"));
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
      {PayloadKind::initrd, delta::FileMethod::zstd_repack, std::string(64, 'c'), {164, 9}});
  h.root_ops = {173, 100};
  h.root_literals = {273, 1000};
  h.root_sha256 = std::string(64, 'd');
  h.reference_blocks = 5;
  const delta::Header back = delta::Header::parse(h.to_json());
  CHECK(back.to_json() == h.to_json());
  REQUIRE(back.file(PayloadKind::initrd));
  CHECK(back.file(PayloadKind::initrd)->method == delta::FileMethod::zstd_repack);
  std::string j = h.to_json();
  CHECK_THROWS_WITH(delta::Header::parse(j.replace(j.find("\"format\": 2"), 11, "\"format\": 1")),
                    Contains("use the full bundle"));
  j = h.to_json();
  // Repacking is for initrds only.
  CHECK_THROWS_WITH(delta::Header::parse(j.replace(j.find("\"same\""), 6, "\"zstd-repack\"")),
                    Contains("method"));
}
