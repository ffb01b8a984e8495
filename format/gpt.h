// GPT partition tables through libfdisk (the library behind fdisk/sfdisk), on disk image
// files and block devices alike. Offsets and sizes are in bytes throughout.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "format/uuid.h"

namespace osup::gpt {

struct Partition {
  int number = 0;  // 1-based, as GPT tools print it
  std::string label;
  Uuid type, uuid;
  uint64_t start = 0, size = 0;  // bytes
};

struct Table {
  Uuid disk_uuid;
  uint64_t sector_size = 512, disk_size = 0;
  std::vector<Partition> partitions;

  [[nodiscard]] const Partition* find(std::string_view label) const;
  [[nodiscard]] const Partition* by_number(int number) const;
};

// Reads the table of a regular file or block device; throws "PATH has no GPT partition table".
[[nodiscard]] Table read(const std::string& path);

struct NewPartition {
  std::string label;
  Uuid type, uuid;
  uint64_t size = 0;  // bytes, rounded up to 1 MiB; 0 = the rest of the disk (last one only)
};

// Writes a fresh GPT (protective MBR, primary and backup table) with the partitions numbered
// 1.. in order, each starting on 1 MiB. A regular file is created or resized (sparsely) to
// disk_size; a block device keeps its size and must be at least disk_size.
Table create(const std::string& path, uint64_t disk_size, const Uuid& disk_uuid,
             const std::vector<NewPartition>& partitions);

// Changes one partition's UUID, holding flock(LOCK_EX) on PATH while the table changes so
// udev and other partitioners do not see it half-written.
void set_partition_uuid(const std::string& path, int number, const Uuid& uuid);

}  // namespace osup::gpt
