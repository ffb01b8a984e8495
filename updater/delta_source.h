// The device's side of a delta's inputs: blocks of the running slot's root, each checked
// against that slot's verity tree before use, and kernel/initrd rebuilt from the running
// slot's files.
#pragma once

#include <memory>
#include <string>

#include "base/fd.h"
#include "base/mapped_file.h"
#include "format/delta.h"
#include "format/manifest.h"
#include "format/verity.h"
#include "updater/disk.h"

namespace osup {

class VerifiedSlotBlocks : public delta::SourceBlocks {
 public:
  // Checks the slot's tree against m's root hash first (cheap: the hash partition only).
  VerifiedSlotBlocks(const OsupDisk& disk, layout::Slot s, const Manifest& m);
  ~VerifiedSlotBlocks() override;
  [[nodiscard]] uint64_t block_count() const override { return blocks_; }
  // Throws naming the block when the running slot's bytes do not match its tree.
  void read(uint64_t first_block, uint64_t count, std::byte* out) override;
  // Maps the ranges side by side from the partition (page cache, not anonymous memory;
  // copied in only where pages are not 4 KiB) and checks every block.
  std::span<const std::byte> view(const std::vector<delta::BlockRange>& ranges) override;

 private:
  void check(const std::byte* blocks, uint64_t first, uint64_t count);
  void drop_view();
  std::string name_;
  UniqueFd fd_;
  uint64_t root_offset_ = 0, blocks_ = 0;
  std::unique_ptr<MappedFile> level0_;
  std::unique_ptr<verity::ParallelHasher> hasher_;
  std::vector<uint8_t> digests_;
  void* view_ = nullptr;
  size_t view_size_ = 0;
};

// Writes the new kernel or initrd to `out_path` from the running slot's file (`source`,
// a host file) and the delta's section; checks the source against fd.source_sha256 first
// and the result against `want` (the signed manifest's entry). Scratch files go to `tmp`.
void apply_file_delta(const delta::FileDelta& fd, int delta_fd, uint64_t data_start,
                      const std::string& source, const Payload& want, const std::string& out_path,
                      const std::string& tmp);

}  // namespace osup
