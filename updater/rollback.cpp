#include "updater/rollback.h"

#include "base/error.h"
#include "updater/verify.h"

namespace osup {

RollbackResult rollback(const OsupDisk& disk, BootControl& boot, const sig::TrustStore* trust,
                        bool force) {
  const layout::Slot target = layout::other(current_slot(disk, boot));
  const std::string name = std::string("slot ") + layout::slot_char(target);
  const SlotBoot b = boot.slot(target);
  if (b.state == SlotState::empty) fail("cannot roll back: " + name + " holds no bootable version");
  if (b.state == SlotState::bad && !force)
    fail("cannot roll back: " + name +
         " is marked bad (it failed to boot); pass --force to try it anyway");
  RollbackResult result{target, "", true};
  if (!force) {
    if (!trust) fail("cannot roll back: no trusted keys to check " + name + " with");
    // Only a version whose signature and hash tree still check out is worth booting.
    const Manifest m = with_context("cannot roll back",
                                    [&] { return verified_slot_manifest(disk, target, *trust); });
    with_context("cannot roll back: " + name + "'s verity tree",
                 [&] { check_slot_tree(disk, target, m); });
    result.version = m.name + " " + m.version;
  } else {
    try {  // only for the message: --force may be rolling back to a slot that is damaged
      if (auto m = slot_manifest(disk, target)) result.version = m->name + " " + m->version;
    } catch (const Error&) {
    }
  }
  // Run twice, the second rollback finds nothing to do.
  result.changed = !(boot.next_boot() == target && b.state == SlotState::good);
  if (result.changed) boot.make_first(target);
  return result;
}

}  // namespace osup
