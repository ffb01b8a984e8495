#include "powerloss/write_log.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace osup::powerloss {

namespace {

uint64_t le64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void put_le64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

constexpr size_t kSuperSize = 28, kEntrySize = 32;
constexpr uint64_t kKnownFlags = kFlush | kFua | kDiscard | kMark;

}  // namespace

WriteLog::WriteLog(const std::string& path) : path_(path) {
  map_ = std::make_unique<MappedFile>(path);
  const auto bytes = map_->bytes();
  if (bytes.size() < kSuperSize || le64(bytes.data()) != kLogMagic)
    fail("write log " + path +
         " has no dm-log-writes superblock; record it with run-vm --log-writes");
  if (le64(bytes.data() + 8) != kLogVersion)
    fail("write log " + path + " has version " + std::to_string(le64(bytes.data() + 8)) +
         ", not 1; record it with QEMU's blklogwrites");
  committed_ = le64(bytes.data() + 16);
  uint32_t ss = 0;
  for (int i = 3; i >= 0; --i) ss = (ss << 8) | static_cast<uint8_t>(bytes[24 + i]);
  if (ss < kEntrySize || (ss & (ss - 1)) != 0)
    fail("write log " + path + " has an invalid sector size " + std::to_string(ss));
  sector_size_ = ss;
  // Walk every complete entry: those after the last flush are not in nr_entries.
  for (uint64_t off = ss; off + ss <= bytes.size();) {
    LogEntry e;
    e.sector = le64(bytes.data() + off);
    e.nr_sectors = le64(bytes.data() + off + 8);
    e.flags = le64(bytes.data() + off + 16);
    e.log_offset = off;
    e.data_offset = off + ss;
    if ((e.flags & ~kKnownFlags) != 0) {
      if (entries_.size() < committed_)
        fail("write log " + path + ": entry " + std::to_string(entries_.size()) +
             " has unknown flags; the log is damaged");
      break;  // garbage after the last entry QEMU wrote
    }
    const uint64_t data = (e.flags & kDiscard) ? 0 : e.nr_sectors * ss;
    if (e.data_offset + data > bytes.size()) break;  // cut off mid-entry: not recorded
    entries_.push_back(e);
    off = e.data_offset + data;
  }
  if (entries_.size() < committed_)
    fail("write log " + path + " holds " + std::to_string(entries_.size()) +
         " entries but its superblock counts " + std::to_string(committed_) + "; it is truncated");
}

std::span<const std::byte> WriteLog::data(const LogEntry& e) const {
  if (!e.is_write()) return {};
  return map_->bytes().subspan(e.data_offset, e.nr_sectors * sector_size_);
}

size_t WriteLog::entry_at_log_size(uint64_t offset) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), offset,
                             [](const LogEntry& e, uint64_t o) { return e.log_offset < o; });
  return static_cast<size_t>(it - entries_.begin());
}

WriteLogWriter::WriteLogWriter(const std::string& path, uint32_t sector_size)
    : path_(path), fd_(open_file(path, O_WRONLY | O_CREAT | O_TRUNC)), sector_size_(sector_size) {
  finish();
}

void WriteLogWriter::entry(uint64_t sector, uint64_t nr_sectors, uint64_t flags,
                           std::span<const std::byte> data) {
  std::vector<std::byte> head(sector_size_);
  put_le64(head.data(), sector);
  put_le64(head.data() + 8, nr_sectors);
  put_le64(head.data() + 16, flags);
  pwrite_all(fd_.get(), head, next_ * sector_size_, path_);
  ++next_;
  if (!data.empty()) pwrite_all(fd_.get(), data, next_ * sector_size_, path_);
  if ((flags & kDiscard) == 0) next_ += nr_sectors;
  ++count_;
}

void WriteLogWriter::write(uint64_t sector, std::span<const std::byte> data, uint64_t flags) {
  if (data.empty() || data.size() % sector_size_ != 0)
    fail("write log " + path_ + ": a write must be whole sectors");
  entry(sector, data.size() / sector_size_, flags, data);
}

void WriteLogWriter::flush() {
  entry(0, 0, kFlush, {});
  finish();
}

void WriteLogWriter::discard(uint64_t sector, uint64_t nr_sectors) {
  entry(sector, nr_sectors, kDiscard, {});
}

void WriteLogWriter::finish() {
  std::vector<std::byte> super(sector_size_);
  put_le64(super.data(), kLogMagic);
  put_le64(super.data() + 8, kLogVersion);
  put_le64(super.data() + 16, count_);
  for (int i = 0; i < 4; ++i) super[24 + i] = static_cast<std::byte>(sector_size_ >> (8 * i));
  pwrite_all(fd_.get(), super, 0, path_);
}

}  // namespace osup::powerloss
