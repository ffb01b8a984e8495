// "Rerunning the operation then succeeds": after a cut, the interrupted operation is run
// again with the real osup binary, offline (`osup --disk IMG --booted a switch BUNDLE`,
// ...), on a whole-disk copy of the crash state; it must exit 0 and leave the slot it
// wanted first, booting by the loader's pick, with every file and root block verified.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "format/disk_layout.h"
#include "format/signature.h"

namespace osup::powerloss {

// How a phase's operation is run again: osup's arguments after --disk/--keys/--booted.
struct Rerun {
  std::string name;     // "switch"
  layout::Slot booted;  // the slot running when the operation was cut
  std::vector<std::string> args;
  layout::Slot boots;  // what the loader must pick once it has succeeded
};

// The operations of the recording that osup reruns: switch (BUNDLE), the boots of b and
// a (mark-good: the loader's own rename is redone by the loader at the next boot),
// rollback and switch-delta (DELTA). First boot's rerun is the next boot itself (the
// initrd), not an osup command. An empty BUNDLE or DELTA: no rerun of that switch.
[[nodiscard]] std::optional<Rerun> rerun_for_phase(const std::string& phase,
                                                   const std::string& bundle,
                                                   const std::string& delta = "");

// Runs osup on `image` and checks the result as the crash check does (examine_esp, then
// the picked slot's root against its tree). "" when it succeeded, else why not.
// damaged_esp: the image's ESP is the crash state's own, which fsck.vfat -n faults (no
// boot repaired it): osup may also refuse, with its "is inconsistent" line and the ESP
// left byte for byte as it was (then *refused is set).
[[nodiscard]] std::string rerun_error(const std::string& image, const Rerun& r,
                                      const std::string& osup_exe, const std::string& keys_dir,
                                      const sig::TrustStore& trust,
                                      const std::map<std::string, std::string>& loader_files,
                                      bool damaged_esp = false, bool* refused = nullptr);

}  // namespace osup::powerloss
