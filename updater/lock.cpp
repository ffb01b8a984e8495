#include "updater/lock.h"

#include <fcntl.h>
#include <sys/file.h>

#include <filesystem>

#include "format/error.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup {

DiskLock::DiskLock(const std::string& disk) {
  // A lock file per disk under /run/lock, not the disk itself: libfdisk and gpt::
  // take their own flock on the device while they rewrite the table.
  std::string dir = fs::exists("/run/lock") ? "/run/lock/osup" : "/tmp/osup-lock";
  fs::create_directories(dir);
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(disk, ec);
  std::string key = to_hex(sha256(ec ? disk : canon.string())).substr(0, 16);
  std::string path = dir + "/" + key + ".lock";
  fd_ = open_file(path, O_RDWR | O_CREAT, 0600);
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK) fail("another osup is already working on " + disk + "; wait for it to finish");
    fail_errno("lock " + path, errno);
  }
}

}  // namespace osup
