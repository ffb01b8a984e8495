// What a slot puts on the ESP and on its kernel command line. Builder (factory image, slot
// a) and updater (every later install) both go through these, so they cannot drift apart.
#pragma once

#include <string>

#include "format/disk_layout.h"
#include "format/manifest.h"

namespace osup {

struct SlotEspPaths {
  std::string dir;        // "/osup/a"
  std::string kernel;     // "/osup/a/vmlinuz"
  std::string initrd;     // "/osup/a/initrd"
  std::string manifest;   // "/osup/a/manifest.json" (the signed bytes, kept for verify/status)
  std::string signature;  // "/osup/a/manifest.json.sig"
};
[[nodiscard]] SlotEspPaths slot_esp_paths(layout::Slot s);

// The kernel command line of a slot: the image's own options, then dm-verity for the root
// (systemd-veritysetup-generator's roothash= and the DPS-paired PARTUUIDs), then osup.slot=.
[[nodiscard]] std::string slot_cmdline(const Manifest& m, layout::Slot s);

// The bundle payload holding the slot's signed UKI (its signed command line names the slot).
[[nodiscard]] PayloadKind slot_uki_kind(layout::Slot s);

// Entry title shown by the boot menu: "minimal 1.2.0 (slot b)".
[[nodiscard]] std::string slot_title(const Manifest& m, layout::Slot s);

}  // namespace osup
