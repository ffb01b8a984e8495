#include "boot/fat_check.h"

#include <fcntl.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"

namespace osup {

namespace {

uint32_t le16(const uint8_t* p) { return p[0] | (p[1] << 8); }
uint32_t le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Reads byte ranges of the file system; with O_DIRECT through an aligned bounce buffer.
class Reader {
 public:
  explicit Reader(const FatSource& src)
      : src_(src), fd_(open_file(src.path, O_RDONLY | O_CLOEXEC | (src.direct ? O_DIRECT : 0))) {}

  std::vector<uint8_t> read(uint64_t offset, size_t len) const {
    constexpr uint64_t kAlign = 4096;
    const uint64_t abs = src_.offset + offset;
    const uint64_t start = src_.direct ? abs & ~(kAlign - 1) : abs;
    const uint64_t end = src_.direct ? (abs + len + kAlign - 1) & ~(kAlign - 1) : abs + len;
    void* raw = nullptr;
    if (posix_memalign(&raw, kAlign, end - start) != 0) fail("out of memory reading " + src_.path);
    const std::unique_ptr<void, decltype(&std::free)> buf(raw, &std::free);
    const size_t got =
        pread_full(fd_.get(), {static_cast<std::byte*>(raw), end - start}, start, src_.path);
    if (got < abs - start + len)
      fail(src_.path + ": the FAT file system at byte " + std::to_string(src_.offset) +
           " ends early (short read at " + std::to_string(abs) + ")");
    const auto* p = static_cast<const uint8_t*>(raw) + (abs - start);
    return {p, p + len};
  }

 private:
  const FatSource& src_;
  UniqueFd fd_;
};

struct Geometry {
  uint32_t bytes_per_sector = 0, cluster_bytes = 0, clusters = 0, bits = 0;
  uint64_t fat_offset = 0, data_offset = 0, root_offset = 0;
  uint32_t root_entries = 0, root_cluster = 0, fat_bytes = 0;
};

Geometry parse_boot_sector(const std::vector<uint8_t>& b, const std::string& what) {
  Geometry g;
  g.bytes_per_sector = le16(&b[11]);
  const uint32_t spc = b[13], reserved = le16(&b[14]), fats = b[16];
  g.root_entries = le16(&b[17]);
  const uint32_t total = le16(&b[19]) ? le16(&b[19]) : le32(&b[32]);
  const uint32_t fat_sectors = le16(&b[22]) ? le16(&b[22]) : le32(&b[36]);
  const bool sane = (g.bytes_per_sector == 512 || g.bytes_per_sector == 1024 ||
                     g.bytes_per_sector == 2048 || g.bytes_per_sector == 4096) &&
                    spc && (spc & (spc - 1)) == 0 && reserved && fats && fat_sectors &&
                    b[510] == 0x55 && b[511] == 0xAA;
  if (!sane) fail(what + " does not hold a FAT file system (no valid boot sector)");
  g.cluster_bytes = g.bytes_per_sector * spc;
  const uint32_t root_sectors = (g.root_entries * 32 + g.bytes_per_sector - 1) / g.bytes_per_sector;
  const uint64_t first_data = reserved + uint64_t{fats} * fat_sectors + root_sectors;
  if (first_data >= total) fail(what + ": FAT boot sector gives no room for data");
  g.clusters = static_cast<uint32_t>((total - first_data) / spc);
  g.bits = g.clusters < 4085 ? 12 : g.clusters < 65525 ? 16 : 32;
  g.fat_offset = uint64_t{reserved} * g.bytes_per_sector;
  g.fat_bytes = fat_sectors * g.bytes_per_sector;
  g.root_offset = g.fat_offset + uint64_t{fats} * g.fat_bytes;
  g.data_offset = first_data * g.bytes_per_sector;
  if (g.bits == 32) g.root_cluster = le32(&b[44]);
  return g;
}

// One part of an 8.3 name, lower-cased when the record's case flag says so (what Linux
// shows for names like "vmlinuz" that need no long name).
std::string short_name(const uint8_t* r, size_t at, size_t len, bool lower) {
  std::string s(reinterpret_cast<const char*>(r + at), len);
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (lower)
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

class Checker {
 public:
  Checker(const FatSource& src, size_t max) : reader_(src), max_(max) {
    const std::string what = src.path + "@" + std::to_string(src.offset);
    g_ = parse_boot_sector(reader_.read(0, 512), what);
    fat_ = reader_.read(g_.fat_offset, g_.fat_bytes);
    claimed_.assign(size_t{g_.clusters} + 2, false);
  }

  std::vector<std::string> run() {
    if (g_.bits == 32) {
      walk_dir("", g_.root_cluster, 0);
    } else {
      scan_records("", reader_.read(g_.root_offset, size_t{g_.root_entries} * 32), 0);
    }
    return problems_;
  }

 private:
  uint32_t entry(uint32_t c) const {
    if (g_.bits == 32) return le32(&fat_[size_t{c} * 4]) & 0x0FFFFFFF;
    if (g_.bits == 16) return le16(&fat_[size_t{c} * 2]);
    const uint32_t v = le16(&fat_[c + c / 2]);
    return c & 1 ? v >> 4 : v & 0xFFF;
  }
  bool in_fat(uint32_t c) const {
    const size_t need = g_.bits == 32   ? size_t{c} * 4 + 4
                        : g_.bits == 16 ? size_t{c} * 2 + 2
                                        : c + c / 2 + 2;
    return need <= fat_.size();
  }
  uint32_t end_mark() const { return g_.bits == 32 ? 0x0FFFFFF8 : g_.bits == 16 ? 0xFFF8 : 0xFF8; }
  bool full() const { return problems_.size() >= max_; }
  void problem(const std::string& p) {
    if (!full()) problems_.push_back(p);
  }

  // The clusters of a chain, each checked: in range, allocated, not bad, claimed once;
  // `broken` is set when one is not (the problem is reported once, here).
  std::vector<uint32_t> chain(const std::string& path, uint32_t c, bool* broken = nullptr) {
    std::vector<uint32_t> out;
    const uint32_t last = g_.clusters + 1, bad = end_mark() - 1;
    while (true) {
      if (broken) *broken = true;  // until the chain ends well
      if (c < 2 || c > last || !in_fat(c)) {
        problem(path + ": its chain leaves the data area (cluster " + std::to_string(c) + ")");
        return out;
      }
      if (claimed_[c]) {
        problem(path + ": cluster " + std::to_string(c) + " is also another file's (cross-link)");
        return out;
      }
      claimed_[c] = true;
      out.push_back(c);
      const uint32_t next = entry(c);
      if (next == 0) {
        problem(path + ": cluster " + std::to_string(c) + " of its chain is free in the FAT");
        return out;
      }
      if (next == bad) {
        problem(path + ": cluster " + std::to_string(c) + " is marked bad");
        return out;
      }
      if (next >= end_mark()) {
        if (broken) *broken = false;
        return out;
      }
      c = next;
    }
  }

  void walk_dir(const std::string& path, uint32_t first, int depth) {
    const std::vector<uint32_t> clusters = chain(path.empty() ? "/" : path, first);
    std::vector<uint8_t> records;
    for (uint32_t c : clusters) {
      const auto part =
          reader_.read(g_.data_offset + uint64_t{c - 2} * g_.cluster_bytes, g_.cluster_bytes);
      records.insert(records.end(), part.begin(), part.end());
    }
    scan_records(path, records, depth);
  }

  void scan_records(const std::string& dir, const std::vector<uint8_t>& records, int depth) {
    for (size_t off = 0; off + 32 <= records.size() && !full(); off += 32) {
      const uint8_t* r = &records[off];
      if (r[0] == 0x00) return;  // no records after this one
      const uint8_t attr = r[11];
      if (r[0] == 0xE5 || (attr & 0x3F) == 0x0F || (attr & 0x08)) continue;  // deleted, LFN, label
      const std::string name = short_name(r, 0, 8, r[12] & 0x08);
      if (name == "." || name == "..") continue;
      const std::string ext = short_name(r, 8, 3, r[12] & 0x10);
      const std::string path = dir + "/" + name + (ext.empty() ? "" : "." + ext);
      const uint32_t first = le16(r + 26) | (g_.bits == 32 ? le16(r + 20) << 16 : 0);
      const uint32_t size = le32(r + 28);
      if (attr & 0x10) {
        if (first == 0) {
          problem(path + ": directory without a start cluster");
        } else if (depth < 16) {
          walk_dir(path, first, depth + 1);
        }
      } else if (first == 0) {
        if (size) problem(path + ": " + std::to_string(size) + " bytes but no start cluster");
      } else {
        bool broken = false;
        const size_t n = chain(path, first, &broken).size();
        if (!broken && uint64_t{n} * g_.cluster_bytes < size)
          problem(path + ": " + std::to_string(size) + " bytes on a chain of " + std::to_string(n) +
                  " clusters");
      }
    }
  }

  Reader reader_;
  size_t max_;
  Geometry g_;
  std::vector<uint8_t> fat_;
  std::vector<bool> claimed_;
  std::vector<std::string> problems_;
};

}  // namespace

std::vector<std::string> fat_inconsistencies(const FatSource& src, size_t max) {
  return Checker(src, max).run();
}

namespace {

void drop_cache(const std::string& path, uint64_t offset, uint64_t size) {
  const UniqueFd fd = open_file(path, O_RDONLY | O_CLOEXEC);
  (void)::posix_fadvise(fd.get(), static_cast<off_t>(offset), static_cast<off_t>(size),
                        POSIX_FADV_DONTNEED);
}

}  // namespace

int repair_fat(const std::string& device, const FatSource& src, uint64_t size) {
  drop_cache(device, 0, size);
  const int rc = run({"fsck.vfat", "-a", device}).exit_code;
  drop_cache(device, 0, size);
  if (device != src.path) drop_cache(src.path, src.offset, size);
  return rc;
}

void require_consistent_fat(const FatSource& src, const std::string& what) {
  const std::vector<std::string> p = fat_inconsistencies(src, 1);
  if (p.empty()) return;
  fail(what + " is inconsistent (" + p.front() +
       "; a power cut during an earlier write?): writing to it could overwrite that file. "
       "Repair it first with `fsck.vfat -a` on the unmounted ESP (a boot does this when "
       "dosfstools is installed), then run osup again");
}

}  // namespace osup
