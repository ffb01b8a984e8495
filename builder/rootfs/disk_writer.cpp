#include "builder/rootfs/disk_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/error.h"

namespace osup::build {

namespace {

constexpr int kDiskFlags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                           ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_SPARSE |
                           ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                           ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;

}  // namespace

// No lookup functions are set on the writer, so owners stay numeric.
WriteArchive disk_writer() {
  WriteArchive w(archive_write_disk_new(), archive_write_free);
  if (!w) fail("libarchive: out of memory");
  archive_write_disk_set_options(w.get(), kDiskFlags);
  return w;
}

ScopedChdir::ScopedChdir(const std::string& dir) : old_(open_file(".", O_RDONLY | O_DIRECTORY)) {
  if (::chdir(dir.c_str()) != 0) fail_errno("chdir " + dir, errno);
}

ScopedChdir::~ScopedChdir() {
  if (::fchdir(old_.get()) != 0) std::perror("osup-build: restoring working directory");
}

}  // namespace osup::build
