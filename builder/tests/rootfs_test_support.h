// Helpers shared by the rootfs tests.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "base/error.h"
#include "base/fd.h"
#include "tests/support/test_support.h"

namespace osup::test {

// The message fn throws, or "(no error)", so a CHECK shows what happened either way.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const osup::Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::string slurp(const std::string& path) { return osup::read_text_file(path); }

// Exists, or is a dangling symlink.
inline bool lexists(const std::string& p) {
  return std::filesystem::exists(std::filesystem::symlink_status(p));
}

}  // namespace osup::test
