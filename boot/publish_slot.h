// What a slot puts on the ESP, written in one place: `osup-build image` publishes the
// factory slot with it and `osup switch` every later one, so the two cannot drift apart
// (a test compares the ESP each leaves, file by file).
#pragma once

#include <string>

#include "base/arch.h"
#include "boot/boot_control.h"
#include "boot/esp_access.h"
#include "format/disk_layout.h"
#include "format/manifest.h"

namespace osup {

struct SlotRelease {
  const Manifest& manifest;
  std::string manifest_bytes;  // the exact signed bytes, kept for verify, status and rollback
  std::string signature;
  std::string kernel;  // host file; "" when the release carries no kernel (it cannot boot)
  std::string initrd;  // host file, or ""
  std::string uki;     // host file: the slot's signed UKI (a Secure Boot bundle's uki-a/uki-b),
                       // or "": then kernel and initrd stay off the ESP and the entry is Type #2
};

// Before a slot's partitions are rewritten: its loader entry goes first (nothing boots the
// slot), then its kept manifest and signature (nothing rolls back to it), kernel and initrd. A slot
// with nothing installed is left as it is.
void retire_slot(EspAccess& esp, BootControl& boot, layout::Slot s);

// After the slot's partitions were written and verified: kernel, initrd, signature and
// manifest to /osup/<slot>/ (both slots' directories are made with the first slot, the
// factory one at build time, so `switch` never makes a directory on FAT: a cut during that
// mkdir could leave one with start cluster 0, which fsck.vfat deletes; docs/powerloss.md), then,
// last, the loader entry with the manifest's tries and the slot's command line (boot/slot_boot.h).
// With a UKI (`boot` must then be the Type #2 backend, systemd_boot_uki.h) only signature and
// manifest go to /osup/<slot>/ and the signed UKI is the entry: nothing unsigned that boots is
// written. Every step is an atomic replace and a fault point. Without a kernel no entry is
// written; returns whether one was.
bool publish_slot(EspAccess& esp, BootControl& boot, layout::Slot s, const SlotRelease& r);

// The boot loader itself, as the builder puts it on a new ESP: EFI_BINARY as the firmware's
// fallback (/EFI/BOOT/BOOTX64.EFI, BOOTAA64.EFI) and as /EFI/systemd/systemd-boot*.efi, and
// the loader.conf osup needs (boot/systemd_boot.h; `uki` for a disk of Type #2 entries).
void install_systemd_boot(EspAccess& esp, const std::string& efi_binary, Arch arch,
                          bool uki = false);

}  // namespace osup
