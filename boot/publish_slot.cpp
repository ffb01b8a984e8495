#include "boot/publish_slot.h"

#include "base/error.h"
#include "base/fault.h"
#include "boot/slot_boot.h"
#include "boot/systemd_boot.h"
#include "boot/systemd_boot_uki.h"

namespace osup {

void retire_slot(EspAccess& esp, BootControl& boot, layout::Slot s) {
  const SlotEspPaths paths = slot_esp_paths(s);
  fault::point("disable target entry");
  boot.disable(s);
  fault::point("remove target manifest");
  esp.remove(paths.manifest);
  esp.remove(paths.signature);
  // The kernel and initrd too: publish_slot then writes them under names not in use. A
  // rename over a file on FAT frees its clusters in a separate write from its directory
  // record; a cut between them leaves the name on free clusters, which the next write
  // allocates again and the next rename over it frees (docs/powerloss.md).
  esp.remove(paths.kernel);
  esp.remove(paths.initrd);
}

bool publish_slot(EspAccess& esp, BootControl& boot, layout::Slot s, const SlotRelease& r) {
  const SlotEspPaths paths = slot_esp_paths(s);
  const std::string name = std::string("slot ") + layout::slot_char(s);
  const bool uki = !r.uki.empty();
  if (uki != (boot.name() == kSystemdBootUki))
    fail(uki ? "cannot install " + name + ": its release boots a signed UKI, but the " +
                   esp.describe() + " boots with " + boot.name() +
                   "; flash a Secure Boot image (spec field secure_boot) first"
             : "cannot install " + name + ": the " + esp.describe() +
                   " boots signed UKIs only (Secure Boot); install a bundle built with "
                   "secure_boot");
  with_context("installing boot files of " + name, [&] {
    for (layout::Slot d : {layout::Slot::a, layout::Slot::b}) esp.mkdirs(slot_esp_paths(d).dir);
    fault::point("copy kernel");
    if (!r.kernel.empty() && !uki) esp.copy_in(r.kernel, paths.kernel);
    fault::point("copy initrd");
    if (!r.initrd.empty() && !uki) esp.copy_in(r.initrd, paths.initrd);
    fault::point("write signature");
    esp.write_atomic(paths.signature, r.signature);
    fault::point("write manifest");
    esp.write_atomic(paths.manifest, r.manifest_bytes);
  });
  if (r.kernel.empty()) return false;
  // Last: the loader learns about the slot only now that everything else is in place.
  fault::point("install entry");
  with_context("writing the boot entry of " + name, [&] {
    const Manifest& m = r.manifest;
    if (uki)
      return boot.install(s,
                          EntrySpec{slot_title(m, s), m.version, "", "", "", m.boot.tries, r.uki});
    boot.install(s,
                 EntrySpec{slot_title(m, s), m.version, paths.kernel,
                           r.initrd.empty() ? "" : paths.initrd, slot_cmdline(m, s), m.boot.tries});
  });
  return true;
}

void install_systemd_boot(EspAccess& esp, const std::string& efi_binary, Arch arch, bool uki) {
  with_context("installing systemd-boot from " + efi_binary, [&] {
    esp.mkdirs("/EFI/BOOT");
    esp.copy_in(efi_binary, "/EFI/BOOT/" + efi_fallback_name(arch));
    esp.mkdirs("/EFI/systemd");
    esp.copy_in(efi_binary, "/EFI/systemd/" + systemd_boot_name(arch));
    esp.mkdirs("/loader");
    esp.write_atomic(kLoaderConf, loader_conf(uki));
  });
}

}  // namespace osup
