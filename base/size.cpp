#include "base/size.h"

#include <cctype>
#include <cstdio>

#include "base/error.h"

namespace osup {

uint64_t parse_size(std::string_view text, const std::string& what) {
  auto bad = [&]() -> uint64_t {
    fail(what + ": invalid size '" + std::string(text) +
         "'; use a number with an optional K, M, G or T suffix");
  };
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return bad();
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    if (value > (UINT64_MAX - 9) / 10) return bad();
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  std::string_view suffix = text.substr(i);
  uint64_t mult = 1;
  if (suffix.empty() || suffix == "B")
    mult = 1;
  else if (suffix == "K" || suffix == "KiB" || suffix == "k")
    mult = KiB;
  else if (suffix == "M" || suffix == "MiB")
    mult = MiB;
  else if (suffix == "G" || suffix == "GiB")
    mult = GiB;
  else if (suffix == "T" || suffix == "TiB")
    mult = 1024 * GiB;
  else
    return bad();
  if (value > UINT64_MAX / mult) return bad();
  return value * mult;
}

std::string format_size(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace osup
