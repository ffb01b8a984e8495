#include "updater/bundle_source.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "base/error.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

// "; it holds a.osup and b.osup" when DIR has bundles in it (the usual slip: the mount point).
std::string bundles_in(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".osup") names.push_back(e.path().filename().string());
  if (names.empty()) return "";
  std::sort(names.begin(), names.end());
  std::string list = names[0];
  for (size_t i = 1; i < names.size() && i < 4; ++i)
    list += (i + 1 == names.size() ? " and " : ", ") + names[i];
  if (names.size() > 4) list += ", ...";
  return "; it holds " + list;
}

}  // namespace

std::unique_ptr<ByteSource> open_bundle_source(const std::string& what) {
  return open_bundle_source(what, HttpOptions{});
}

std::unique_ptr<ByteSource> open_bundle_source(const std::string& what, const HttpOptions& http) {
  if (what == "-") return fd_source(STDIN_FILENO, "stdin");
  if (is_url(what)) return open_http_source(what, http);
  std::error_code ec;
  if (fs::is_directory(what, ec))
    fail(what + " is a directory, not a bundle; name the .osup file in it" + bundles_in(what));
  return open_file_source(what);
}

}  // namespace osup
