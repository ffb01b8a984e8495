// Reading a write log in the dm-log-writes on-disk format, the format QEMU's
// `blklogwrites` block driver records: every write (with its data), flush, FUA and
// discard that reached the disk, in the order they completed.
//
// Layout (little-endian; one "log sector" = the superblock's sectorsize):
//   log sector 0: magic 0x6a736677736872, version 1, nr_entries, sectorsize
//   then per entry: one log sector holding {sector, nr_sectors, flags, data_len},
//   followed by nr_sectors log sectors of data (none for a discard).
// `sector` and `nr_sectors` count log sectors of the recorded disk. QEMU rewrites the
// superblock only at flushes, so entries after the last flush are found by walking.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/mapped_file.h"

namespace osup::powerloss {

inline constexpr uint64_t kLogMagic = 0x6a736677736872ull;
inline constexpr uint64_t kLogVersion = 1;
enum LogFlag : uint64_t { kFlush = 1, kFua = 2, kDiscard = 4, kMark = 8 };

struct LogEntry {
  uint64_t sector = 0;       // first disk sector written (log sector units)
  uint64_t nr_sectors = 0;   // length
  uint64_t flags = 0;        // LogFlag bits
  uint64_t log_offset = 0;   // byte offset of the entry header in the log file
  uint64_t data_offset = 0;  // byte offset of the data in the log file (writes only)

  [[nodiscard]] bool is_flush() const { return (flags & kFlush) != 0; }
  [[nodiscard]] bool is_write() const {
    return nr_sectors > 0 && (flags & (kDiscard | kMark)) == 0;
  }
};

class WriteLog {
 public:
  // Maps the log and walks its entries; throws naming the log and the bad entry.
  explicit WriteLog(const std::string& path);

  [[nodiscard]] uint32_t sector_size() const { return sector_size_; }
  [[nodiscard]] const std::vector<LogEntry>& entries() const { return entries_; }
  // Entries the superblock counts (those up to the last flush QEMU recorded).
  [[nodiscard]] uint64_t committed_entries() const { return committed_; }
  // The data of a write entry, `sectors` long from its `first` sector.
  [[nodiscard]] std::span<const std::byte> data(const LogEntry& e) const;
  // Index of the first entry whose header starts at or after byte `offset` of the log
  // (a size the log had at some moment: the entries written before it).
  [[nodiscard]] size_t entry_at_log_size(uint64_t offset) const;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::span<const std::byte> bytes() const { return map_->bytes(); }

 private:
  std::string path_;
  std::unique_ptr<MappedFile> map_;
  uint32_t sector_size_ = 512;
  uint64_t committed_ = 0;
  std::vector<LogEntry> entries_;
};

// Writes a log in the same format (test fixtures, and slices of a recorded log).
class WriteLogWriter {
 public:
  WriteLogWriter(const std::string& path, uint32_t sector_size = 512);
  void write(uint64_t sector, std::span<const std::byte> data, uint64_t flags = 0);
  void flush();
  void discard(uint64_t sector, uint64_t nr_sectors);
  // Rewrites the superblock with the entry count (QEMU does it at every flush).
  void finish();

 private:
  void entry(uint64_t sector, uint64_t nr_sectors, uint64_t flags, std::span<const std::byte> data);
  std::string path_;
  UniqueFd fd_;
  uint32_t sector_size_;
  uint64_t next_ = 1, count_ = 0;
};

}  // namespace osup::powerloss
