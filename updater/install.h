// `osup switch`: a signed bundle, streamed into the inactive slot, verified, then made
// the slot the loader tries next. Keeps DESIGN.md's crash-safety invariants.
#pragma once

#include <optional>
#include <string>

#include "format/manifest.h"
#include "format/progress.h"
#include "format/signature.h"
#include "format/verity.h"
#include "updater/boot_control.h"
#include "updater/slots.h"

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

// The slot osup treats as running: the booted one live, the loader's next pick offline.
[[nodiscard]] layout::Slot current_slot(const System& sys, const BootControl& boot);

// The signed manifest kept on the ESP for a slot, if any (not re-verified here).
[[nodiscard]] std::optional<Manifest> slot_manifest(const System& sys, layout::Slot s);

// Verifies a slot's kept manifest against `trust`; returns it, or throws saying why not.
Manifest verified_slot_manifest(const System& sys, layout::Slot s, const sig::TrustStore& trust);

[[nodiscard]] verity::Params verity_params(const Manifest& m);
// Checks that a slot's verity partition chains up to its manifest's root hash (cheap).
void check_slot_tree(const System& sys, layout::Slot s, const Manifest& m);

InstallResult install_bundle(System& sys, BootControl& boot, const sig::TrustStore& trust,
                             const InstallOptions& opts);

// Re-hashes a slot (verity tree, every data block, kernel and initrd) against its manifest.
void verify_slot(const System& sys, layout::Slot s, const sig::TrustStore& trust,
                 ProgressMode progress);

}  // namespace osup
