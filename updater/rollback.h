// `osup rollback`: the other slot boots next, with no data written (boot metadata only).
#pragma once

#include <string>

#include "boot/boot_control.h"
#include "format/signature.h"
#include "updater/disk.h"

namespace osup {

struct RollbackResult {
  layout::Slot slot = layout::Slot::a;  // the slot that boots next
  std::string version;                  // its "NAME VERSION", "" when its manifest is unreadable
  bool changed = false;  // false: it already was the good slot booting next; nothing written
};

// Makes the slot other than the current one boot next (as a good slot: it proved itself
// before). Refuses an empty slot, and unless `force`, a bad one and one whose kept manifest
// is no longer signed by `trust` or whose verity tree no longer chains to it. `trust` may be
// null only with `force`. A slot that already boots next as a good slot is left as it is.
RollbackResult rollback(const OsupDisk& disk, BootControl& boot, const sig::TrustStore* trust,
                        bool force);

}  // namespace osup
