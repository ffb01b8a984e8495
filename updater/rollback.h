// `osup rollback`: the other slot boots next, with no data written (boot metadata only).
#pragma once

#include "boot/boot_control.h"
#include "format/signature.h"
#include "updater/disk.h"

namespace osup {

// Makes the slot other than the current one boot next (as a good slot: it proved itself
// before) and returns it. Refuses an empty slot, and unless `force`, a bad one and one whose
// kept manifest is no longer signed by `trust` or whose verity tree no longer chains to it.
// `trust` may be null only with `force`.
layout::Slot rollback(const OsupDisk& disk, BootControl& boot, const sig::TrustStore* trust,
                      bool force);

}  // namespace osup
