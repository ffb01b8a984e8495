// The check of one crash state: would this disk boot a good system? The state is
// materialized region by region (GPT, ESP, the slots the loader could boot, data) and
// every region's verdict is kept by content key, so identical regions are checked once.
//   - systemd-boot's pick (osup's model of the loader, boot/systemd_boot.h) exists;
//   - every entry the loader could boot (the pick, and the fallback when the pick's tries
//     run out) belongs to a slot whose signed manifest verifies, whose entry is exactly
//     what osup writes, whose kernel and initrd match the manifest, whose partitions carry
//     the UUIDs the command line names, and whose root verifies against its verity tree;
//   - the loader's binaries and loader.conf are the base's bytes;
//   - fsck.vfat -n finds nothing but the dirty bit a crash while mounted leaves;
//   - the data file system, after the journal replay a mount does, passes e2fsck -fn.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "format/disk_layout.h"
#include "format/gpt.h"
#include "format/manifest.h"
#include "format/signature.h"
#include "powerloss/crash_disk.h"
#include "updater/disk.h"

namespace osup::powerloss {

struct Verdict {
  std::optional<layout::Slot> boots;  // the slot systemd-boot picks
  std::vector<std::string> failures;  // empty: the state boots a good system
  bool esp_repaired = false;          // fsck.vfat found damage that -a repairs harmlessly
};

struct CheckCounts {
  size_t gpt = 0, esp = 0, roots = 0, data = 0;  // distinct regions checked
  size_t esp_repaired = 0;                       // distinct ESPs fsck.vfat -a had to repair
};

// What the ESP of one state offers the loader.
struct BootEntry {
  std::string file;
  std::optional<layout::Slot> slot;
  std::string linux_path, initrd, options;
};
struct EspVerdict {
  std::optional<std::string> picked;
  std::vector<BootEntry> bootable;                  // picked first
  std::map<layout::Slot, std::string> slot_errors;  // ESP-side problems per slot
  std::map<layout::Slot, Manifest> manifests;       // of slots without such problems
  std::vector<std::string> failures;                // loader files, fsck.vfat
  std::string damage;                               // what fsck.vfat -n reported, if anything
};

class CrashChecker {
 public:
  // work_dir holds the working files (a sparse disk, the ESP, the data partition).
  CrashChecker(const std::string& base_image, const WriteLog& log, sig::TrustStore trust,
               const std::string& work_dir);
  ~CrashChecker();

  // with_data: also e2fsck the data partition (the expensive part; a campaign may sample).
  [[nodiscard]] Verdict check(const CrashState& s, bool with_data = true);
  [[nodiscard]] const CheckCounts& counts() const { return counts_; }
  // The state last checked as one disk image at `path`, for rerunning the operation on
  // it; the data partition is left as holes (an update neither reads nor writes it).
  // boot_fsck: with the ESP as the boot before the rerun leaves it (fsck.vfat -a when
  // fsck.vfat -n finds damage; osup itself refuses to write on an inconsistent FAT).
  void write_disk_image(const std::string& path, bool boot_fsck = true);
  [[nodiscard]] const sig::TrustStore& trust() const { return trust_; }
  [[nodiscard]] const std::map<std::string, std::string>& base_loader_files() const {
    return base_loader_files_;
  }

 private:
  [[nodiscard]] std::string gpt_error();
  [[nodiscard]] const EspVerdict& esp_verdict();
  void judge_repair(EspVerdict& v);
  [[nodiscard]] std::string slot_error(layout::Slot s, const Manifest& m);
  [[nodiscard]] std::string data_error();
  [[nodiscard]] RegionKey combined_key(std::initializer_list<const char*> names) const;

  std::string work_;
  sig::TrustStore trust_;
  gpt::Table base_table_;
  std::unique_ptr<CrashDisk> disk_;
  OsupDisk osup_;  // the working files, seen the way osup sees a disk
  std::map<std::string, std::string> base_loader_files_;
  std::map<RegionKey, std::pair<std::string, gpt::Table>> gpt_cache_;
  std::map<RegionKey, EspVerdict> esp_cache_;
  std::map<std::pair<RegionKey, std::string>, std::string> root_cache_;
  std::map<RegionKey, std::string> data_cache_;
  CheckCounts counts_;
};

}  // namespace osup::powerloss
