#include "format/initrd_pack.h"

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

using namespace osup;

namespace {

std::string archive(const std::vector<std::pair<std::string, std::string>>& entries, size_t pad) {
  return test::newc_cpio(entries, pad);
}

std::string noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('a' + rng() % 4);  // compressible, not trivial
  return s;
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

std::vector<std::byte> packed(const std::string& raw) {
  std::vector<std::byte> out(initrd::pack_bound(bytes(raw)));
  out.resize(initrd::pack(bytes(raw), out));
  return out;
}

}  // namespace

TEST_CASE("initrd packing round-trips and is deterministic", "[unit]") {
  const std::string raw = archive({{"init", noise(300000, 1)}, {"etc/os-release", "ID=x\n"}}, 4);
  REQUIRE(initrd::is_raw_cpio(bytes(raw)));
  CHECK(initrd::early_cpio_end(bytes(raw)) == 0);
  const auto p = packed(raw);
  CHECK(p.size() < raw.size() / 2);
  CHECK(p == packed(raw));
  CHECK_FALSE(initrd::is_raw_cpio(p));
  const auto info = initrd::parse(p);
  REQUIRE(info);
  CHECK(info->early == 0);
  CHECK(info->raw_size == raw.size());
  std::vector<std::byte> back(info->raw_size);
  initrd::unpack(p, *info, back);
  CHECK(std::equal(back.begin(), back.end(), bytes(raw).begin(), bytes(raw).end()));
}

TEST_CASE("an early microcode cpio stays uncompressed in front", "[unit]") {
  const std::string early = archive(
      {{"early_cpio", "1\n"}, {"kernel/x86/microcode/GenuineIntel.bin", noise(5000, 2)}}, 512);
  const std::string main = archive({{"init", noise(100000, 3)}}, 4);
  const std::string raw = early + main;
  CHECK(initrd::early_cpio_end(bytes(raw)) == early.size());
  const auto p = packed(raw);
  CHECK(std::equal(p.begin(), p.begin() + static_cast<ptrdiff_t>(early.size()),
                   bytes(early).begin()));
  const auto info = initrd::parse(p);
  REQUIRE(info);
  CHECK(info->early == early.size());
  std::vector<std::byte> back(info->raw_size);
  initrd::unpack(p, *info, back);
  CHECK(std::equal(back.begin(), back.end(), bytes(raw).begin(), bytes(raw).end()));
}

TEST_CASE("files that are no packed initrd are recognised as such", "[unit]") {
  const std::string raw = archive({{"init", noise(1000, 4)}}, 4);
  CHECK_FALSE(initrd::parse(bytes(raw)));  // uncompressed
  auto p = packed(raw);
  p.pop_back();
  CHECK_FALSE(initrd::parse(p));  // truncated frame
  std::vector<std::byte> two = packed(raw), second = packed(raw);
  two.insert(two.end(), second.begin(), second.end());
  CHECK_FALSE(initrd::parse(two));  // more than one frame
  CHECK_FALSE(initrd::parse(bytes(std::string("\x1f\x8b\x08\x00", 4) + noise(100, 5))));  // gzip
}
