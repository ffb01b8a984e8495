// The machine file's `data` section with Debian's restic: an encrypted backup of chosen
// paths, and a restore that never overwrites a local file newer than the snapshot's
// copy unless forced. The password comes from a file or an environment variable, checked
// before restic runs; it is never in the machine file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/progress.h"
#include "updater/machine/machine_config.h"

namespace osup::machine {

struct BackupResult {
  std::string snapshot;  // restic's short id
  bool created_repository = false;
  uint64_t files = 0, bytes = 0, added_bytes = 0;
  double seconds = 0;
};

// Backs up data.paths (creating the repository on the first run).
BackupResult backup_data(const DataSection& data, ProgressMode progress);

struct RestoreOptions {
  std::string snapshot = "latest";
  bool force = false;  // overwrite local files newer than the snapshot's
  // Where restic restores before the files are moved into place: on the data partition,
  // so the moves are renames. Removed when done.
  std::string staging = "/var/lib/osup/restore-staging";
  ProgressMode progress = ProgressMode::automatic;
};

struct RestoreResult {
  std::string snapshot;
  uint64_t restored = 0, bytes = 0;
  std::vector<std::string> kept_newer;  // local files left because they are newer
};

RestoreResult restore_data(const DataSection& data, const RestoreOptions& options);

}  // namespace osup::machine
