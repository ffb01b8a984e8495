// The flashable disk image: GPT with the DPS layout (docs/design.md "Disk layout"), filled
// from already-built ESP, root and verity images. No loop devices and no mounts.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/arch.h"
#include "format/uuid.h"

namespace osup::build {

inline constexpr uint64_t kMinDataSize = 64ull << 20;  // data partition at least
inline constexpr uint64_t kGptOverhead = 2ull << 20;   // first MiB + backup table, rounded

struct DiskPlan {
  Arch arch = Arch::x86_64;
  uint64_t disk_size = 0, esp_size = 0, slot_size = 0 /* root partition */, verity_size = 0;
  Uuid disk_uuid, esp_uuid, data_uuid;
  // The pipeline replaces root/verity UUIDs of slot a with the DPS pairing of its root hash.
  Uuid root_a_uuid, verity_a_uuid, root_b_uuid, verity_b_uuid;
};

struct DiskSizes {
  uint64_t disk = 0, esp = 0, slot = 0, verity = 0;
};

// The one rule for whether the partitions fit (the spec's validation applies it too, so a
// disk.size that is too small fails before any build work): sizes rounded up to 1 MiB,
// verity from the hash tree size of a full slot, room for GPT, ESP, two slots with their
// verity partitions and kMinDataSize of data. Throws naming the spec field to change.
[[nodiscard]] DiskSizes check_disk_sizes(uint64_t disk_size, uint64_t esp_size, uint64_t slot_size);

// check_disk_sizes' sizes with UUIDs derived from seed ("" = random).
[[nodiscard]] DiskPlan plan_disk(Arch arch, uint64_t disk_size, uint64_t esp_size,
                                 uint64_t slot_size, const std::string& seed);

struct DiskContents {
  std::string esp_image;                 // a FAT image from build_esp
  std::string root_image, verity_image;  // slot a
  std::string data_label = "osup-data";  // ext4 label of the data partition
};

// Writes the whole disk image to PATH (via PATH.tmp and rename): GPT, ESP, slot a, an empty
// slot b (holes) and a fresh ext4 data partition filling the rest. Stays sparse.
void write_disk_image(const std::string& path, const DiskPlan& plan, const DiskContents& contents);

// --- sparse-file helpers (shared with flash) ---

// Calls fn(offset, length) for every data extent of the first `size` bytes of fd, in order,
// using SEEK_DATA/SEEK_HOLE; the whole range at once where the filesystem cannot tell.
void for_each_data_extent(int fd, uint64_t size,
                          const std::function<void(uint64_t offset, uint64_t length)>& fn);

// Copies the file src into dst_fd at dst_offset, skipping src's holes and all-zero 64 KiB
// blocks (dst must read as zero there already, e.g. a fresh sparse file). Returns src's size.
uint64_t copy_sparse(const std::string& src, int dst_fd, uint64_t dst_offset);

}  // namespace osup::build
