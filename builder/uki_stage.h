// The Secure Boot part of `osup-build image`, run only when the spec has `secure_boot`:
// one signed UKI per slot (the command line names the slot, so a and b differ) and a
// signed systemd-boot, written next to the bundle. Images without the field are built
// exactly as before.
//
// The pipeline then puts both UKIs in the bundle (payloads uki-a, uki-b, named in the signed
// manifest) and slot a's UKI and the signed loader on the disk image's ESP
// (docs/design.md "Verified boot").
#pragma once

#include <string>
#include <vector>

#include "base/arch.h"
#include "boot/esp_access.h"
#include "builder/secure_boot.h"
#include "format/manifest.h"

namespace osup::build {

// Copies the image's EFI stub out of the root (before the root is packed and removed)
// into WORK; checks sbsign is installed. Throws when the image lacks systemd-boot-efi.
[[nodiscard]] std::string copy_uki_stub(const std::string& rootdir, Arch arch,
                                        const std::string& work);

struct SignedBootInputs {
  std::string stub, kernel, initrd, loader;  // host files; initrd may be ""
  std::string out_dir, stem, work;
};

// OUT_DIR/STEM-slot-a.efi, STEM-slot-b.efi (signed UKIs for the manifest's root hash and
// command line) and STEM-systemd-boot<arch>.efi (the loader, signed); returns their paths.
std::vector<std::string> write_signed_boot_files(const SecureBootKey& key, const Manifest& m,
                                                 Arch arch, const SignedBootInputs& in);

// Puts the enrollment files on the ESP as /loader/keys/NAME/{PK,KEK,db}.auth and adds
// `secure-boot-enroll MODE` to loader.conf. systemd-boot 252 enrolls unattended ("force")
// only from the directory named `auto` (boot.c), when the firmware is in setup mode, and
// then resets the machine; "manual" (directory `osup`) only offers "Enroll Secure Boot
// keys: osup" in its menu. In user mode neither does anything.
void install_enrollment_keys(EspAccess& esp, const SecureBootEnroll& e);

}  // namespace osup::build
