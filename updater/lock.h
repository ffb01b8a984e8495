// One osup at a time per disk: an exclusive flock, released when the process ends (so a
// crash never leaves a stale lock behind).
#pragma once

#include <string>

#include "base/fd.h"

namespace osup {

class DiskLock {
 public:
  // Takes the lock for COMMAND (e.g. "switch"), waiting up to WAIT_SECONDS while another
  // osup holds it: at boot, `osup mark-good` runs a moment after a user can log in, and a
  // switch typed then should not fail for that. Says once on stderr what it waits for.
  // Throws "another osup (COMMAND, pid N) is still working on DISK ..." on timeout.
  DiskLock(const std::string& disk, const std::string& command, double wait_seconds);

 private:
  UniqueFd fd_;
};

struct OsupDisk;
// The disk's lock, then its ESP's FAT checked (require_sound_esp, updater/disk.h): what
// every command that writes does before its first write.
[[nodiscard]] DiskLock lock_for_writing(const OsupDisk& disk, const std::string& command,
                                        double wait_seconds);

}  // namespace osup
