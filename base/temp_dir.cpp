#include "base/temp_dir.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "base/error.h"

namespace osup {

TempDir::TempDir(const std::string& parent, const std::string& prefix) {
  const char* env = std::getenv("TMPDIR");
  std::string t = (env && *env ? std::string(env) : parent) + "/" + prefix + "XXXXXX";
  if (!::mkdtemp(t.data())) fail_errno("create a temporary directory in " + t, errno);
  path_ = t;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace osup
