// 128-bit UUIDs in RFC 4122 text form, as GPT and the DPS use them.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace osup {

struct Uuid {
  std::array<uint8_t, 16> bytes{};  // big-endian (RFC 4122 text order)

  [[nodiscard]] std::string str() const;  // lowercase 8-4-4-4-12
  [[nodiscard]] bool is_nil() const;
  // clang-tidy 14 sees a literal 0 in the defaulted comparison's expansion.
  auto operator<=>(const Uuid&) const = default;  // NOLINT(modernize-use-nullptr)

  // Throws "invalid UUID in WHAT".
  [[nodiscard]] static Uuid parse(std::string_view text, const std::string& what = "UUID");
  // Version-4 UUID from the OS random source.
  [[nodiscard]] static Uuid random();
  // Version-4-shaped UUID derived from SHA-256(seed || "/" || label): reproducible builds.
  [[nodiscard]] static Uuid derived(std::string_view seed, std::string_view label);
  // The first 16 bytes as-is (DPS pairing rule: root UUID = root hash[0..16)).
  [[nodiscard]] static Uuid from_bytes(std::span<const uint8_t> sixteen);
};

}  // namespace osup
