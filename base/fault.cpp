#include "base/fault.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace osup::fault {

void point(const char* name) {
  static const long fail_at = [] {
    const char* v = std::getenv("OSUP_FAULT_AT");
    return v ? std::strtol(v, nullptr, 10) : 0L;
  }();
  static const char* log_path = std::getenv("OSUP_FAULT_LOG");
  static long count = 0;
  ++count;
  if (log_path) {
    if (FILE* f = std::fopen(log_path, "a")) {
      std::fprintf(f, "%ld %s\n", count, name);
      std::fclose(f);
    }
  }
  if (fail_at > 0 && count == fail_at) {
    std::fprintf(stderr, "osup: injected fault at point %ld (%s)\n", count, name);
    ::_exit(97);
  }
}

}  // namespace osup::fault
