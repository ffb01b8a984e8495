// A crash state as an overlay on the read-only base image: for every disk sector, where
// its bytes come from (the base, or one write in the log). Regions of the disk (a
// partition, the GPT) are materialized into working files only when a check needs them,
// by writing just the sectors that differ from what the file holds; a region's content
// hash (order-free, over its overlay) lets checks of identical regions be skipped.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/mapped_file.h"
#include "powerloss/crash_states.h"
#include "powerloss/write_log.h"

namespace osup::powerloss {

struct Region {
  std::string name;
  uint64_t first = 0, count = 0;  // disk sectors
  std::string file;               // working file the region is materialized into
  uint64_t file_first = 0;        // sector of the file where the region starts
};

// Identifies a region's content in one crash state (equal -> byte-identical).
using RegionKey = std::array<uint64_t, 2>;

class CrashDisk {
 public:
  // The working files start as copies of the base's regions (holes kept).
  CrashDisk(const std::string& base_image, const WriteLog& log, std::vector<Region> regions);
  CrashDisk(const CrashDisk&) = delete;
  CrashDisk& operator=(const CrashDisk&) = delete;

  // Moves to a state; states must come in order of durable_end.
  void select(const CrashState& s);
  [[nodiscard]] RegionKey key(size_t region) const;
  // Makes the region's working file hold the selected state's bytes.
  void materialize(size_t region);
  [[nodiscard]] const Region& region(size_t i) const { return regions_[i]; }
  [[nodiscard]] size_t find(const std::string& name) const;
  [[nodiscard]] uint64_t disk_sectors() const { return sectors_; }

 private:
  struct Work {
    UniqueFd fd;
    std::vector<uint64_t> current;  // source of each region sector in the file now
  };
  void set_durable(uint64_t sector, uint64_t src);
  void apply(const LogEntry& e, uint64_t sectors,
             std::vector<std::pair<uint64_t, uint64_t>>& out) const;
  [[nodiscard]] const std::byte* source_bytes(uint64_t src, uint64_t sector) const;
  void write_run(size_t region, uint64_t from, uint64_t to, const std::vector<uint64_t>& target);

  const WriteLog& log_;
  std::unique_ptr<MappedFile> base_;
  uint64_t ss_ = 512, sectors_ = 0;
  std::vector<Region> regions_;
  std::vector<Work> work_;
  std::vector<uint64_t> durable_;  // per disk sector: 0 = base, else byte offset in the log
  std::vector<RegionKey> durable_key_;
  size_t applied_ = 0;  // log entries folded into durable_
  // The selected state beyond durable_: (sector, source), sorted, one per sector.
  std::vector<std::pair<uint64_t, uint64_t>> delta_;
};

}  // namespace osup::powerloss
