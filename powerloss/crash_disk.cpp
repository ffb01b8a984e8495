#include "powerloss/crash_disk.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "base/error.h"

namespace osup::powerloss {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// One sector's share of a region key; the key is their sum, so it is order-free and
// updated in O(1) when one sector changes.
RegionKey share(uint64_t sector, uint64_t src) {
  if (src == 0) return {0, 0};
  return {mix(sector * 0x9e3779b97f4a7c15ull ^ src), mix(src * 0xd1b54a32d192ed03ull + sector)};
}

void add(RegionKey& k, const RegionKey& a) { k[0] += a[0], k[1] += a[1]; }
void sub(RegionKey& k, const RegionKey& a) { k[0] -= a[0], k[1] -= a[1]; }

// Copies [off, off+len) of in to out at out_off, skipping holes.
void copy_sparse(int in, int out, uint64_t off, uint64_t len, uint64_t out_off,
                 const std::string& what) {
  const auto end = static_cast<off_t>(off + len);
  for (auto pos = static_cast<off_t>(off); pos < end;) {
    const off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0 || data >= end) break;
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    hole = std::min(hole < 0 ? end : hole, end);
    loff_t from = data;
    auto to = static_cast<loff_t>(out_off + static_cast<uint64_t>(data) - off);
    for (size_t left = static_cast<size_t>(hole - data); left > 0;) {
      const ssize_t n = ::copy_file_range(in, &from, out, &to, left, 0);
      if (n <= 0) fail_errno("copying the base image into " + what, n < 0 ? errno : EIO);
      left -= static_cast<size_t>(n);
    }
    pos = hole;
  }
}

}  // namespace

CrashDisk::CrashDisk(const std::string& base_image, const WriteLog& log,
                     std::vector<Region> regions)
    : log_(log),
      base_(std::make_unique<MappedFile>(base_image)),
      ss_(log.sector_size()),
      regions_(std::move(regions)) {
  sectors_ = base_->size() / ss_;
  durable_.assign(sectors_, 0);
  durable_key_.assign(regions_.size(), RegionKey{0, 0});
  for (const Region& r : regions_) std::filesystem::remove(r.file);
  UniqueFd base = open_file(base_image, O_RDONLY);
  for (const Region& r : regions_) {
    if (r.first + r.count > sectors_)
      fail("region " + r.name + " lies beyond the end of " + base_image);
    Work w{open_file(r.file, O_RDWR | O_CREAT), std::vector<uint64_t>(r.count, 0)};
    const uint64_t need = (r.file_first + r.count) * ss_;
    if (fd_size(w.fd.get(), r.file) < need && ::ftruncate(w.fd.get(), static_cast<off_t>(need)) < 0)
      fail_errno("resize " + r.file, errno);
    copy_sparse(base.get(), w.fd.get(), r.first * ss_, r.count * ss_, r.file_first * ss_, r.file);
    work_.push_back(std::move(w));
  }
}

size_t CrashDisk::find(const std::string& name) const {
  for (size_t i = 0; i < regions_.size(); ++i)
    if (regions_[i].name == name) return i;
  fail("no disk region named " + name);
}

void CrashDisk::set_durable(uint64_t sector, uint64_t src) {
  for (size_t r = 0; r < regions_.size(); ++r) {
    const Region& g = regions_[r];
    if (sector >= g.first && sector < g.first + g.count) {
      sub(durable_key_[r], share(sector, durable_[sector]));
      add(durable_key_[r], share(sector, src));
    }
  }
  durable_[sector] = src;
}

void CrashDisk::apply(const LogEntry& e, uint64_t sectors,
                      std::vector<std::pair<uint64_t, uint64_t>>& out) const {
  if (e.sector + sectors > sectors_)
    fail("write log " + log_.path() + " writes sector " + std::to_string(e.sector + sectors - 1) +
         ", beyond the base image's end; is it the base the log was recorded on?");
  for (uint64_t i = 0; i < sectors; ++i) out.emplace_back(e.sector + i, e.data_offset + i * ss_);
}

void CrashDisk::select(const CrashState& s) {
  if (s.durable_end < applied_) fail("crash states must come in log order");
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  for (; applied_ < s.durable_end; ++applied_) {
    const LogEntry& e = log_.entries()[applied_];
    if (!e.is_write()) continue;
    writes.clear();
    apply(e, e.nr_sectors, writes);
    for (const auto& [sector, src] : writes) set_durable(sector, src);
  }
  delta_.clear();
  for (const size_t i : s.extra) apply(log_.entries()[i], log_.entries()[i].nr_sectors, delta_);
  if (s.torn) apply(log_.entries()[s.torn->entry], s.torn->sectors, delta_);
  // Later writes win: a stable sort keeps log order among equal sectors, keep the last.
  std::stable_sort(delta_.begin(), delta_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t out = 0;
  for (size_t i = 0; i < delta_.size(); ++i) {
    if (i + 1 < delta_.size() && delta_[i + 1].first == delta_[i].first) continue;
    delta_[out++] = delta_[i];
  }
  delta_.resize(out);
}

RegionKey CrashDisk::key(size_t region) const {
  const Region& g = regions_[region];
  RegionKey k = durable_key_[region];
  auto it = std::lower_bound(delta_.begin(), delta_.end(), std::make_pair(g.first, uint64_t{0}));
  for (; it != delta_.end() && it->first < g.first + g.count; ++it) {
    sub(k, share(it->first, durable_[it->first]));
    add(k, share(it->first, it->second));
  }
  return k;
}

const std::byte* CrashDisk::source_bytes(uint64_t src, uint64_t sector) const {
  if (src == 0) return base_->bytes().data() + sector * ss_;
  return log_.bytes().data() + src;
}

void CrashDisk::write_run(size_t region, uint64_t from, uint64_t to,
                          const std::vector<uint64_t>& target) {
  const Region& g = regions_[region];
  std::vector<std::byte> buf((to - from) * ss_);
  for (uint64_t i = from; i < to; ++i)
    std::memcpy(buf.data() + (i - from) * ss_, source_bytes(target[i], g.first + i), ss_);
  pwrite_all(work_[region].fd.get(), buf, (g.file_first + from) * ss_, g.file);
}

void CrashDisk::materialize(size_t region) {
  const Region& g = regions_[region];
  std::vector<uint64_t> target(durable_.begin() + static_cast<ptrdiff_t>(g.first),
                               durable_.begin() + static_cast<ptrdiff_t>(g.first + g.count));
  auto it = std::lower_bound(delta_.begin(), delta_.end(), std::make_pair(g.first, uint64_t{0}));
  for (; it != delta_.end() && it->first < g.first + g.count; ++it)
    target[it->first - g.first] = it->second;
  std::vector<uint64_t>& cur = work_[region].current;
  // Runs of differing sectors, at most 1 MiB each, one pwrite per run.
  const uint64_t max_run = (1u << 20) / ss_;
  for (uint64_t i = 0; i < g.count;) {
    if (cur[i] == target[i]) {
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < g.count && j - i < max_run && cur[j] != target[j]) ++j;
    write_run(region, i, j, target);
    std::copy(target.begin() + static_cast<ptrdiff_t>(i),
              target.begin() + static_cast<ptrdiff_t>(j), cur.begin() + static_cast<ptrdiff_t>(i));
    i = j;
  }
}

}  // namespace osup::powerloss
