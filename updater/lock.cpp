#include "updater/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "base/error.h"
#include "format/sha256.h"
#include "updater/disk.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

bool try_lock(int fd, const std::string& path) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
  if (errno != EWOULDBLOCK && errno != EINTR) fail_errno("lock " + path, errno);
  return false;
}

// "switch, pid 412" from what the holder wrote into the lock file; "" if unreadable.
std::string holder(int fd) {
  char buf[128] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

DiskLock::DiskLock(const std::string& disk, const std::string& command, double wait_seconds) {
  // A lock file per disk under /run/lock, not the disk itself: libfdisk and gpt::
  // take their own flock on the device while they rewrite the table.
  std::string dir = fs::exists("/run/lock") ? "/run/lock/osup" : "/tmp/osup-lock";
  fs::create_directories(dir);
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(disk, ec);
  std::string key = to_hex(sha256(ec ? disk : canon.string())).substr(0, 16);
  std::string path = dir + "/" + key + ".lock";
  fd_ = open_file(path, O_RDWR | O_CREAT, 0600);

  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(wait_seconds);
  // Who holds the lock is read only for the two messages: once when we start waiting, and
  // again at the deadline (the holder may have changed meanwhile).
  auto other = [&] {
    std::string who = holder(fd_.get());
    return "another osup" + (who.empty() ? "" : " (" + who + ")");
  };
  bool said = false;
  while (!try_lock(fd_.get(), path)) {
    if (clock::now() >= deadline) {
      std::string msg = other();
      msg += " is still working on ";
      msg += disk;
      fail(msg + "; wait for it to finish, or give --lock-wait more seconds");
    }
    if (!said) {
      std::fprintf(stderr, "osup: waiting for %s to finish on %s\n", other().c_str(), disk.c_str());
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Tell a waiter who holds the lock. Best effort: the flock, not this text, is the lock.
  std::string me = command + ", pid " + std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_.get(), 0) == 0) (void)!::pwrite(fd_.get(), me.data(), me.size(), 0);
}

DiskLock lock_for_writing(const OsupDisk& disk, const std::string& command, double wait_seconds) {
  DiskLock lock(disk.path, command, wait_seconds);
  require_sound_esp(disk);
  return lock;
}

}  // namespace osup
