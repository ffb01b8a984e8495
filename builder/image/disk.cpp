#include "builder/image/disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "boot/esp_access.h"
#include "format/disk_layout.h"
#include "format/gpt.h"
#include "format/verity.h"

namespace osup::build {

namespace {

constexpr uint64_t kZeroBlock = 64 * KiB;  // granularity of hole detection when copying
constexpr uint64_t kChunk = 4 * MiB;

// "256 MiB" for whole units, "1.5 GiB" otherwise: messages read like the spec's sizes.
std::string human(uint64_t bytes) {
  for (auto [unit, name] : {std::pair{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}})
    if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + " " + name;
  return format_size(bytes);
}

uint64_t file_size(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) fail_errno(what + " " + path, errno);
  if (!S_ISREG(st.st_mode)) fail(what + " " + path + " is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

bool all_zero(const std::byte* p, size_t n) {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

void check_fits(const std::string& what, const std::string& path, uint64_t room,
                const std::string& room_name, const std::string& knob) {
  const uint64_t size = file_size(path, what);
  if (size > room)
    fail(what + " " + human(size) + " does not fit " + room_name + " " + human(room) + "; raise " +
         knob);
}

// ext4 directly inside the image at the partition's offset: no temp copy, no loop device.
void make_data_fs(const std::string& image, const gpt::Partition& p, const DiskPlan& plan,
                  const std::string& label) {
  const Uuid fs_uuid = Uuid::derived(plan.data_uuid.str(), "data-fs");
  RunOptions opts;
  // Reproducible timestamps when the build asks for them (e2fsprogs' own knob).
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH")) opts.env["E2FSPROGS_FAKE_TIME"] = epoch;
  run_checked(
      {"mkfs.ext4", "-q", "-F", "-b", "4096", "-L", label, "-U", fs_uuid.str(), "-E",
       "offset=" + std::to_string(p.start) + ",root_owner=0:0,nodiscard,hash_seed=" + fs_uuid.str(),
       image, std::to_string(p.size / KiB) + "k"},
      opts);
}

}  // namespace

DiskSizes check_disk_sizes(uint64_t disk_size, uint64_t esp_size, uint64_t slot_size) {
  DiskSizes s;
  s.disk = align_up(disk_size, MiB);
  s.esp = align_up(esp_size, MiB);
  s.slot = align_up(slot_size, MiB);
  if (s.slot == 0) fail("disk.slot must not be 0; use a size like 768M");
  if (s.esp < kMinEspSize)
    fail("disk.esp " + human(s.esp) + " is too small for FAT32 (at least " + human(kMinEspSize) +
         "); raise disk.esp");
  s.verity = align_up(verity::hash_device_size(s.slot), MiB);
  const uint64_t need = s.esp + 2 * (s.slot + s.verity) + kMinDataSize + kGptOverhead;
  if (need > s.disk)
    fail("disk.size " + human(disk_size) + " is too small: esp " + human(s.esp) + " + 2 x (slot " +
         human(s.slot) + " + verity " + human(s.verity) + ") + data ≥ " + human(kMinDataSize) +
         " needs " + human(need) + "; raise disk.size or lower disk.slot");
  return s;
}

DiskPlan plan_disk(Arch arch, uint64_t disk_size, uint64_t esp_size, uint64_t slot_size,
                   const std::string& seed) {
  const DiskSizes sizes = check_disk_sizes(disk_size, esp_size, slot_size);
  DiskPlan p;
  p.arch = arch;
  p.disk_size = sizes.disk;
  p.esp_size = sizes.esp;
  p.slot_size = sizes.slot;
  p.verity_size = sizes.verity;

  auto uuid = [&](const char* label) {
    return seed.empty() ? Uuid::random() : Uuid::derived(seed, label);
  };
  p.disk_uuid = uuid("disk");
  p.esp_uuid = uuid("esp");
  p.data_uuid = uuid("data");
  p.root_a_uuid = uuid("root-a");
  p.verity_a_uuid = uuid("root-a-verity");
  p.root_b_uuid = uuid("root-b");
  p.verity_b_uuid = uuid("root-b-verity");
  return p;
}

void for_each_data_extent(int fd, uint64_t size,
                          const std::function<void(uint64_t, uint64_t)>& fn) {
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return;  // only a hole remains
      if (errno == EINVAL || errno == ENOTSUP) {
        fn(pos, size - pos);  // no hole information (e.g. some block devices)
        return;
      }
      fail_errno("find data extents", errno);
    }
    if (static_cast<uint64_t>(data) >= size) return;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) fail_errno("find data extents", errno);
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    fn(static_cast<uint64_t>(data), end - static_cast<uint64_t>(data));
    pos = end;
  }
}

uint64_t copy_sparse(const std::string& src, int dst_fd, uint64_t dst_offset) {
  UniqueFd in = open_file(src, O_RDONLY | O_CLOEXEC);
  const uint64_t size = fd_size(in.get(), src);
  std::vector<std::byte> buf(kChunk);
  for_each_data_extent(in.get(), size, [&](uint64_t off, uint64_t len) {
    while (len > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(len, kChunk));
      const size_t got = pread_full(in.get(), std::span(buf.data(), want), off, src);
      if (got != want) fail("read " + src + ": file shrank while copying");
      // Write runs of non-zero 64 KiB blocks; all-zero blocks stay holes in the output.
      size_t i = 0;
      while (i < got) {
        size_t n = std::min<size_t>(kZeroBlock, got - i);
        if (all_zero(buf.data() + i, n)) {
          i += n;
          continue;
        }
        size_t j = i + n;
        while (j < got) {
          size_t m = std::min<size_t>(kZeroBlock, got - j);
          if (all_zero(buf.data() + j, m)) break;
          j += m;
        }
        pwrite_all(dst_fd, std::span<const std::byte>(buf.data() + i, j - i), dst_offset + off + i,
                   "the disk image");
        i = j;
      }
      off += got;
      len -= got;
    }
  });
  return size;
}

void write_disk_image(const std::string& path, const DiskPlan& plan, const DiskContents& contents) {
  check_fits("esp image", contents.esp_image, plan.esp_size, "esp", "disk.esp");
  check_fits("root image", contents.root_image, plan.slot_size, "slot", "disk.slot");
  check_fits("verity image", contents.verity_image, plan.verity_size, "verity partition",
             "disk.slot");

  const std::string tmp = path + ".tmp";
  struct RemoveTmp {
    const std::string& p;
    bool keep = false;
    ~RemoveTmp() {
      if (!keep) std::filesystem::remove(p);
    }
  } remove_tmp{tmp};
  std::filesystem::remove(tmp);

  using layout::Slot;
  const Arch a = plan.arch;
  const std::vector<gpt::NewPartition> parts = {
      {layout::kEspLabel, layout::esp_type(), plan.esp_uuid, plan.esp_size},
      {layout::root_label(Slot::a), layout::root_type(a), plan.root_a_uuid, plan.slot_size},
      {layout::verity_label(Slot::a), layout::root_verity_type(a), plan.verity_a_uuid,
       plan.verity_size},
      {layout::root_label(Slot::b), layout::root_type(a), plan.root_b_uuid, plan.slot_size},
      {layout::verity_label(Slot::b), layout::root_verity_type(a), plan.verity_b_uuid,
       plan.verity_size},
      {layout::kDataLabel, layout::data_type(), plan.data_uuid, 0},
  };
  const gpt::Table table = with_context("writing the partition table", [&] {
    return gpt::create(tmp, plan.disk_size, plan.disk_uuid, parts);
  });
  auto part = [&](int number) -> const gpt::Partition& {
    const gpt::Partition* p = table.by_number(number);
    if (!p) fail("partition " + std::to_string(number) + " missing after creating " + tmp);
    return *p;
  };

  {
    UniqueFd out = open_file(tmp, O_RDWR | O_CLOEXEC);
    with_context("writing the ESP", [&] {
      (void)copy_sparse(contents.esp_image, out.get(), part(layout::kEspNumber).start);
    });
    with_context("writing root-a", [&] {
      (void)copy_sparse(contents.root_image, out.get(), part(layout::root_number(Slot::a)).start);
    });
    with_context("writing root-a-verity", [&] {
      (void)copy_sparse(contents.verity_image, out.get(),
                        part(layout::verity_number(Slot::a)).start);
    });
    fsync_fd(out.get(), tmp);
  }
  with_context("making the data filesystem",
               [&] { make_data_fs(tmp, part(layout::kDataNumber), plan, contents.data_label); });
  {
    UniqueFd out = open_file(tmp, O_RDONLY | O_CLOEXEC);
    fsync_fd(out.get(), tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) fail_errno("rename " + tmp + " to " + path, errno);
  remove_tmp.keep = true;
  fsync_dir(std::filesystem::path(path).parent_path().empty()
                ? "."
                : std::filesystem::path(path).parent_path().string());
}

}  // namespace osup::build
