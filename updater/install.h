// `osup switch`: a signed bundle, streamed into the inactive slot, verified, then made
// the slot the loader tries next. Keeps the crash-safety invariants of docs/design.md.
#pragma once

#include <optional>
#include <string>

#include "base/progress.h"
#include "boot/boot_control.h"
#include "format/manifest.h"
#include "format/signature.h"
#include "format/verity.h"
#include "updater/disk.h"
#include "updater/verify.h"

namespace osup {

struct InstallOptions {
  std::string bundle;  // path, or "-" for stdin
  bool allow_downgrade = false;
  bool readback = true;  // re-read the written slot from disk and check it against the tree
  ProgressMode progress = ProgressMode::automatic;
};

struct InstallResult {
  layout::Slot slot = layout::Slot::b;
  std::string version;
  uint64_t root_bytes = 0;
  double stream_seconds = 0, readback_seconds = 0;
};

InstallResult install_bundle(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                             const InstallOptions& opts);

}  // namespace osup
