// A read-only check of a FAT file system's allocation against its directory tree, for
// the ESP before osup writes to it. FAT has no journal: a power cut during a vfat write
// can leave a directory record on clusters the FAT already calls free (docs/powerloss.md,
// finding 5). Any writer that allocates on such a file system may hand those clusters out
// again, and the file the record names is then overwritten. `fsck.vfat -a` repairs it (a
// boot does so when dosfstools is installed); osup refuses to write until then.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace osup {

struct FatSource {
  std::string path;     // an image file, a whole disk or a partition device
  uint64_t offset = 0;  // byte offset of the file system in it
  bool direct = false;  // O_DIRECT: a live device, read past the page cache
};

// What does not add up, one line each ("/osup/b/vmlinuz: cluster 1234 of its chain is free
// in the FAT"), at most `max` of them; empty when every record's chain is allocated,
// in range, and claimed once. Lost clusters (allocated, named by no record) and a
// set dirty bit are harmless for writers and not reported. Throws when the file cannot
// be read or is not FAT12/16/32.
[[nodiscard]] std::vector<std::string> fat_inconsistencies(const FatSource& src, size_t max = 5);

// `fsck.vfat -a DEVICE` (the file system alone: a partition device or image file), what a
// boot's systemd-fsck does before mounting the ESP. The page caches of DEVICE and of the
// same bytes seen through `src` (the whole disk) are dropped around it, so neither serves
// blocks from before the repair. Returns fsck.vfat's exit code (0 clean, 1 repaired).
int repair_fat(const std::string& device, const FatSource& src, uint64_t size);

// Throws "ESP in WHAT is inconsistent: PROBLEM; ..." with what to do, when
// fat_inconsistencies() finds anything. `what` names the ESP for the message.
void require_consistent_fat(const FatSource& src, const std::string& what);

}  // namespace osup
