// The EFI system partition's FAT32 filesystem, built as a standalone image file with
// mkfs.vfat and mtools: no loop devices, no mounts, so it works in unprivileged CI.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace osup::build {

struct EspFile {
  std::string source_path;
  std::string dest;  // absolute path on the ESP, e.g. "/EFI/BOOT/BOOTX64.EFI"
};

struct EspContents {
  std::vector<EspFile> files;
  std::vector<std::pair<std::string, std::string>> texts;  // dest, content
};

// FAT32 below this many bytes has too few clusters and firmware may take it for FAT16.
inline constexpr uint64_t kMinEspSize = 33ull << 20;

// Writes a FAT32 image of `size` bytes (sparse) to image_path, labelled OSUP-ESP, with a
// volume ID derived from `seed` (random when seed is empty) and the given contents.
// Parent directories are created as needed. Throws when the contents do not fit.
void build_esp(const std::string& image_path, uint64_t size, const EspContents& contents,
               const std::string& seed);

}  // namespace osup::build
