#include "format/tar_locator.h"

#include <array>
#include <cstring>
#include <span>

namespace osup {
namespace {

// A ustar numeric field: optional leading spaces, octal digits, then NUL or space.
std::optional<uint64_t> octal(const std::array<char, 512>& h, size_t at, size_t len) {
  uint64_t v = 0;
  size_t i = at;
  while (i < at + len && h[i] == ' ') ++i;
  if (i == at + len || h[i] < '0' || h[i] > '7') return std::nullopt;
  for (; i < at + len && h[i] >= '0' && h[i] <= '7'; ++i)
    v = v * 8 + static_cast<uint64_t>(h[i] - '0');
  return v;
}

// Reads the 512-byte header at pos; true when it is ustar with a correct checksum.
bool load_header(ByteSource& source, uint64_t pos, std::array<char, 512>& h) {
  if (source.read_at(std::as_writable_bytes(std::span(h)), pos) != h.size()) return false;
  unsigned sum = 0;
  for (size_t i = 0; i < h.size(); ++i)
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  return std::memcmp(h.data() + 257, "ustar", 5) == 0 && octal(h, 148, 8) == sum;
}

}  // namespace

std::optional<uint64_t> locate_tar_data(ByteSource& source, uint64_t header_pos,
                                        const std::string& entry, uint64_t size) {
  if (!source.random_access()) return std::nullopt;
  std::array<char, 512> h{};
  uint64_t pos = header_pos;
  if (!load_header(source, pos, h)) return std::nullopt;
  if (h[156] == 'x') {  // pax attributes (e.g. a size over 8 GiB), then the real header
    const auto pax = octal(h, 124, 12);
    if (!pax) return std::nullopt;
    pos += 512 + (*pax + 511) / 512 * 512;
    if (!load_header(source, pos, h)) return std::nullopt;
  }
  if ((h[156] != '0' && h[156] != '\0') || std::string(h.data(), strnlen(h.data(), 100)) != entry ||
      (size < (uint64_t{1} << 33) && octal(h, 124, 12) != size))
    return std::nullopt;
  return pos + 512;
}

}  // namespace osup
