// What osup knows about an installed slot and how it checks one: the kept signed manifest,
// its verity tree, and a full re-hash (`osup verify`, the read-back after an install).
#pragma once

#include <optional>

#include "base/progress.h"
#include "boot/boot_control.h"
#include "format/manifest.h"
#include "format/signature.h"
#include "format/verity.h"
#include "updater/disk.h"

namespace osup {

// The slot osup treats as running: the booted one live, the loader's next pick offline.
[[nodiscard]] layout::Slot current_slot(const OsupDisk& disk, const BootControl& boot);

// The signed manifest kept on the ESP for a slot, if any (not re-verified here).
[[nodiscard]] std::optional<Manifest> slot_manifest(const OsupDisk& disk, layout::Slot s);

// Verifies a slot's kept manifest against `trust`; returns it, or throws saying why not.
Manifest verified_slot_manifest(const OsupDisk& disk, layout::Slot s, const sig::TrustStore& trust);

[[nodiscard]] verity::Params verity_params(const Manifest& m);
// Checks that a slot's verity partition chains up to its manifest's root hash (cheap).
void check_slot_tree(const OsupDisk& disk, layout::Slot s, const Manifest& m);

// Reads the slot's root back from the disk and checks every block against its tree, with
// one stream-sized buffer (the updater's memory bound holds for the read-back too).
void read_back(const OsupDisk& disk, layout::Slot s, const Manifest& m, Progress* progress);

// A Secure Boot slot's UKI in /EFI/Linux (the one the loader would boot) against the
// manifest's uki-a/uki-b sha256; throws naming the slot and the file.
void check_slot_uki(const OsupDisk& disk, layout::Slot s, const Manifest& m);

// Re-hashes a slot (verity tree, every data block, then kernel and initrd, or its UKI on a
// Secure Boot disk) against its manifest.
void verify_slot(const OsupDisk& disk, layout::Slot s, const sig::TrustStore& trust,
                 ProgressMode progress);

}  // namespace osup
