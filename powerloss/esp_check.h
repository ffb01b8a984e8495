// The ESP half of a crash check: what the loader would boot, and whether each bootable
// entry is exactly what osup writes for a slot whose signed files are whole.
#pragma once

#include <map>
#include <string>

#include "format/signature.h"
#include "powerloss/crash_check.h"

namespace osup::powerloss {

// The loader's binaries and loader.conf: an update never changes them.
[[nodiscard]] std::map<std::string, std::string> loader_files(const EspAccess& esp);

// Examines the ESP of disk (its esp_files) as the loader and osup's verify would.
[[nodiscard]] EspVerdict examine_esp(const OsupDisk& disk, const sig::TrustStore& trust,
                                     const std::map<std::string, std::string>& base_loader_files);

// fsck.vfat -n of an ESP image: "" when clean (the dirty bit alone counts as clean: any
// crash while the ESP is mounted leaves it, and neither firmware nor Linux minds it).
[[nodiscard]] std::string fsck_vfat_error(const std::string& image);

}  // namespace osup::powerloss
