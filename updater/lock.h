// One osup at a time per disk: an exclusive flock, released when the process ends (so a
// crash never leaves a stale lock behind).
#pragma once

#include <string>

#include "format/fd.h"

namespace osup {

class DiskLock {
 public:
  // Throws "another osup is already working on DISK; wait for it to finish".
  explicit DiskLock(const std::string& disk);

 private:
  UniqueFd fd_;
};

}  // namespace osup
