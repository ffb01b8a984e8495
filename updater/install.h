// `osup switch`: a signed bundle, streamed into the inactive slot, verified, then made
// the slot the loader tries next. Keeps the crash-safety invariants of docs/design.md.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/byte_source.h"
#include "base/progress.h"
#include "boot/boot_control.h"
#include "format/bundle_reader.h"
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

// A bundle whose signature checked out: its source, its reader (positioned after the
// manifest and signature entries, before the first payload) and the signed manifest.
struct VerifiedBundle {
  std::unique_ptr<ByteSource> source;
  std::unique_ptr<BundleReader> reader;
  Manifest manifest;
};

// Opens the bundle named `what` (open_bundle_source) and checks its signature against
// `trust`, reading the manifest and signature entries only: no payload byte. The first thing
// `osup switch` does, so a bundle signed by another key is refused before the disk is even
// looked at.
[[nodiscard]] VerifiedBundle open_verified_bundle(const std::string& what,
                                                  const sig::TrustStore& trust);

// Installs a verified bundle into the slot other than the current one. Everything the
// manifest allows to check (arch, compatible, version, kernel, sizes) is checked before the
// first write.
InstallResult install_bundle(OsupDisk& disk, BootControl& boot, VerifiedBundle& bundle,
                             const InstallOptions& opts);
// The same, opening and verifying opts.bundle first.
InstallResult install_bundle(OsupDisk& disk, BootControl& boot, const sig::TrustStore& trust,
                             const InstallOptions& opts);

}  // namespace osup
