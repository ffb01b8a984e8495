// Installs a release from a delta (format/delta.h) against the running slot: the same
// checks before the first write as `osup switch`, then the root rebuilt block by block
// (copied blocks checked against the running slot's tree), its verity tree rebuilt and
// required to chain to the signed root hash, and the slot published like a full install.
#pragma once

#include <string>

#include "base/progress.h"
#include "boot/boot_control.h"
#include "format/signature.h"
#include "updater/disk.h"
#include "updater/install.h"

namespace osup {

struct DeltaInstallOptions {
  std::string delta;  // a local file (osup update downloads it first)
  bool allow_downgrade = false;
  ProgressMode progress = ProgressMode::automatic;
};

InstallResult install_delta(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                            const DeltaInstallOptions& opts);

}  // namespace osup
