// Finding the disk osup manages, its partitions and which slot is booted: on a running
// system from the kernel command line and the root device, offline (--disk) from the GPT.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "base/arch.h"
#include "boot/esp_access.h"
#include "format/disk_layout.h"
#include "format/gpt.h"

namespace osup {

struct SlotPartitions {
  gpt::Partition root, verity;
};

struct OsupDisk {
  std::string path;  // whole-disk block device or image file; slots are written at offsets in it
  bool offline = false;
  gpt::Table table;
  Arch arch = Arch::x86_64;
  gpt::Partition esp, data;
  std::array<SlotPartitions, 2> slots;
  std::optional<layout::Slot> booted;  // live: osup.slot=; offline: see discover_disk()
  std::shared_ptr<EspAccess> esp_files;
  std::string esp_mount;   // where esp_files works when it is a mounted ESP, else ""
  bool esp_given = false;  // --esp: the caller's own ESP directory, not the disk's partition
  std::string data_mount;  // live: where the data partition is mounted ("/var"), else ""

  [[nodiscard]] const SlotPartitions& slot(layout::Slot s) const {
    return slots[s == layout::Slot::a ? 0 : 1];
  }
};

struct DiscoverOptions {
  std::optional<std::string> disk;       // --disk: offline on an image file or device
  std::optional<std::string> esp_mount;  // --esp: a mounted ESP to use instead of mtools
  std::string proc_cmdline = "/proc/cmdline";
};

// Throws with what is missing ("DISK has no partition labelled root-b; is it an osup disk?").
[[nodiscard]] OsupDisk discover_disk(const DiscoverOptions& opts);

// Before osup's first write to the ESP: throws with what to do when the disk's ESP holds
// a FAT a power cut left inconsistent (boot/fat_check.h), which a write could make lose a
// file. A mounted ESP is synced first and read past the page cache; a live unmounted one
// is first repaired with fsck.vfat -a (as a boot's systemd-fsck would before mounting it);
// an offline --disk is only checked. Not for --esp.
void require_sound_esp(const OsupDisk& disk);

// The value of osup.slot= in a kernel command line, if any.
[[nodiscard]] std::optional<layout::Slot> slot_from_cmdline(const std::string& cmdline);

}  // namespace osup
