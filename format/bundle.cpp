#include "format/bundle.h"

#include <archive.h>

#include <cctype>

namespace osup {

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out;
}

std::string archive_message(archive* a) {
  const char* e = archive_error_string(a);
  std::string s = e ? e : "unknown error";
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return printable(s);
}

}  // namespace osup
