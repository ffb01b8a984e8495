#include "updater/bundle_source.h"

#include <unistd.h>

namespace osup {

std::unique_ptr<ByteSource> open_bundle_source(const std::string& what) {
  return open_bundle_source(what, HttpOptions{});
}

std::unique_ptr<ByteSource> open_bundle_source(const std::string& what, const HttpOptions& http) {
  if (what == "-") return fd_source(STDIN_FILENO, "stdin");
  if (is_url(what)) return open_http_source(what, http);
  return open_file_source(what);
}

}  // namespace osup
