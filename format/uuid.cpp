#include "format/uuid.h"

#include <openssl/rand.h>

#include <algorithm>

#include "base/error.h"
#include "format/sha256.h"

namespace osup {

std::string Uuid::str() const {
  std::string hex = to_hex(bytes);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

bool Uuid::is_nil() const {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

Uuid Uuid::parse(std::string_view text, const std::string& what) {
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-')
    fail("invalid UUID in " + what + ": '" + std::string(text) + "'");
  std::string hex;
  for (char c : text)
    if (c != '-') hex.push_back(c);
  auto raw = from_hex(hex, what);
  return from_bytes(raw);
}

static Uuid make_v4(Uuid u) {
  u.bytes[6] = static_cast<uint8_t>((u.bytes[6] & 0x0f) | 0x40);
  u.bytes[8] = static_cast<uint8_t>((u.bytes[8] & 0x3f) | 0x80);
  return u;
}

Uuid Uuid::random() {
  Uuid u;
  if (RAND_bytes(u.bytes.data(), 16) != 1) fail("cannot read random bytes for a UUID");
  return make_v4(u);
}

Uuid Uuid::derived(std::string_view seed, std::string_view label) {
  Sha256 h;
  h.update(seed);
  h.update("/");
  h.update(label);
  Digest d = h.finish();
  return make_v4(from_bytes(std::span(d.data(), 16)));
}

Uuid Uuid::from_bytes(std::span<const uint8_t> sixteen) {
  if (sixteen.size() < 16) fail("UUID needs 16 bytes");
  Uuid u;
  std::copy_n(sixteen.begin(), 16, u.bytes.begin());
  return u;
}

}  // namespace osup
