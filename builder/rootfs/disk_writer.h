// libarchive's disk writer, shared by tarball extraction and the overlay: both write
// untrusted entries into a rootfs and rely on its SECURE_* checks.
#pragma once

#include <archive.h>

#include <memory>
#include <string>

#include "base/fd.h"

namespace osup::build {

using ReadArchive = std::unique_ptr<archive, decltype(&archive_read_free)>;
using WriteArchive = std::unique_ptr<archive, decltype(&archive_write_free)>;

// A disk writer keeping owners (numeric: the rootfs's uids never get mapped through the build
// host's /etc/passwd), modes, times, xattrs, ACLs and holes, and refusing absolute names, '..'
// and writes through symlinks.
[[nodiscard]] WriteArchive disk_writer();

// libarchive resolves entry names against the working directory, and its SECURE_* checks
// only work on relative names, so writing runs with the rootfs as the working directory.
class ScopedChdir {
 public:
  explicit ScopedChdir(const std::string& dir);
  ~ScopedChdir();
  ScopedChdir(const ScopedChdir&) = delete;
  ScopedChdir& operator=(const ScopedChdir&) = delete;

 private:
  UniqueFd old_;
};

}  // namespace osup::build
