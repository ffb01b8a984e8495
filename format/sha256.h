// Streaming SHA-256 (OpenSSL EVP) and hex helpers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace osup {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  [[nodiscard]] Digest finish();  // resets the context afterwards

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

[[nodiscard]] Digest sha256(std::span<const std::byte> data);
[[nodiscard]] Digest sha256(std::string_view data);
// SHA-256 of a whole file; "what" names it in errors.
[[nodiscard]] Digest sha256_file(const std::string& path);

[[nodiscard]] std::string to_hex(std::span<const uint8_t> bytes);
// Throws "invalid hex in WHAT" on odd length or non-hex characters.
[[nodiscard]] std::vector<uint8_t> from_hex(std::string_view hex, const std::string& what);
// A SHA-256 digest from 64 hex characters; throws "WHAT must be 32 bytes" otherwise.
[[nodiscard]] Digest digest_from_hex(std::string_view hex, const std::string& what);

}  // namespace osup
