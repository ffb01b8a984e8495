#include "updater/bundle_source.h"

#include <unistd.h>

namespace osup {

std::unique_ptr<ByteSource> open_bundle_source(const std::string& what) {
  if (what == "-") return fd_source(STDIN_FILENO, "stdin");
  return open_file_source(what);
}

}  // namespace osup
