#include "format/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>

#include <algorithm>

#include "base/error.h"
#include "base/fd.h"

namespace osup {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
    fail("sha256: cannot initialise OpenSSL digest");
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::byte> data) {
  EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

void Sha256::update(std::string_view data) {
  EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

Digest Sha256::finish() {
  Digest d{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, d.data(), &len);
  EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr);
  return d;
}

Digest sha256(std::span<const std::byte> data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Digest sha256(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Digest sha256_file(const std::string& path) {
  UniqueFd fd = open_file(path, O_RDONLY);
  Sha256 h;
  std::vector<std::byte> buf(1 << 20);
  for (;;) {
    size_t n = read_full(fd.get(), buf, path);
    h.update(std::span(buf.data(), n));
    if (n < buf.size()) break;
  }
  return h.finish();
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

std::vector<uint8_t> from_hex(std::string_view hex, const std::string& what) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2) fail("invalid hex in " + what + ": odd length");
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) fail("invalid hex in " + what + ": unexpected character");
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

Digest digest_from_hex(std::string_view hex, const std::string& what) {
  auto raw = from_hex(hex, what);
  if (raw.size() != 32) fail(what + " must be 32 bytes");
  Digest d{};
  std::copy(raw.begin(), raw.end(), d.begin());
  return d;
}

}  // namespace osup
