#include "format/gpt.h"

#include <fcntl.h>
#include <libfdisk/libfdisk.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"

namespace osup::gpt {

namespace {

constexpr uint64_t kAlign = 1024ull * 1024;

// libfdisk talks to its caller through "ask" callbacks. We never answer questions (a
// library must not prompt), and keep the last warning so a failure can say why.
struct AskState {
  std::string last_message;
};

int ask_callback(fdisk_context*, fdisk_ask* ask, void* data) {
  auto* state = static_cast<AskState*>(data);
  switch (fdisk_ask_get_type(ask)) {
    case FDISK_ASKTYPE_INFO:
      return 0;
    case FDISK_ASKTYPE_WARN:
    case FDISK_ASKTYPE_WARNX:
      if (const char* m = fdisk_ask_print_get_mesg(ask)) state->last_message = m;
      return 0;
    default:
      return -EINVAL;  // any question means our request was incomplete
  }
}

// One libfdisk context bound to one device or file.
class Context {
 public:
  Context(const std::string& path, bool readonly) : path_(path) {
    cxt_ = fdisk_new_context();
    if (!cxt_) fail("libfdisk: out of memory");
    fdisk_set_ask(cxt_, ask_callback, &ask_);
    fdisk_enable_details(cxt_, 1);
    int rc = fdisk_assign_device(cxt_, path.c_str(), readonly ? 1 : 0);
    if (rc < 0) fail_errno("open " + path + " for partitioning", -rc);
  }
  ~Context() { fdisk_unref_context(cxt_); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  [[nodiscard]] fdisk_context* get() const { return cxt_; }

  // "writing the partition table of PATH: Invalid argument (last libfdisk warning)".
  void check(int rc, const std::string& what) const {
    if (rc >= 0) return;
    std::string msg = what + " on " + path_ + ": " + std::strerror(-rc);
    if (!ask_.last_message.empty()) msg += " (" + ask_.last_message + ")";
    fail(msg);
  }

  // Writes everything and syncs; the context is unusable afterwards.
  void write_and_close() {
    check(fdisk_write_disklabel(cxt_), "writing the partition table");
    check(fdisk_deassign_device(cxt_, 0), "syncing the partition table");
  }

 private:
  std::string path_;
  fdisk_context* cxt_ = nullptr;
  AskState ask_;
};

struct TableDeleter {
  void operator()(fdisk_table* t) const { fdisk_unref_table(t); }
};
struct PartitionDeleter {
  void operator()(fdisk_partition* p) const { fdisk_unref_partition(p); }
};
using PartitionPtr = std::unique_ptr<fdisk_partition, PartitionDeleter>;

Table read_table(const Context& c, const std::string& path) {
  fdisk_context* cxt = c.get();
  if (!fdisk_has_label(cxt) || !fdisk_is_label(cxt, GPT))
    fail(path + " has no GPT partition table");
  Table t;
  t.sector_size = fdisk_get_sector_size(cxt);
  t.disk_size = fdisk_get_nsectors(cxt) * t.sector_size;
  char* id = nullptr;
  c.check(fdisk_get_disklabel_id(cxt, &id), "reading the disk UUID");
  std::unique_ptr<char, decltype(&free)> id_guard(id, &free);
  t.disk_uuid = Uuid::parse(id ? id : "", "the disk UUID of " + path);

  fdisk_table* raw = nullptr;
  c.check(fdisk_get_partitions(cxt, &raw), "reading the partitions");
  std::unique_ptr<fdisk_table, TableDeleter> tb(raw);
  for (size_t i = 0; i < fdisk_table_get_nents(tb.get()); ++i) {
    fdisk_partition* pa = fdisk_table_get_partition(tb.get(), i);
    if (!pa || !fdisk_partition_has_start(pa) || !fdisk_partition_has_size(pa)) continue;
    Partition p;
    p.number = static_cast<int>(fdisk_partition_get_partno(pa)) + 1;
    const std::string what = "partition " + std::to_string(p.number) + " of " + path;
    if (const char* name = fdisk_partition_get_name(pa)) p.label = name;
    const char* uuid = fdisk_partition_get_uuid(pa);
    p.uuid = Uuid::parse(uuid ? uuid : "", "the UUID of " + what);
    fdisk_parttype* type = fdisk_partition_get_type(pa);
    const char* type_str = type ? fdisk_parttype_get_string(type) : nullptr;
    p.type = Uuid::parse(type_str ? type_str : "", "the type of " + what);
    p.start = fdisk_partition_get_start(pa) * t.sector_size;
    p.size = fdisk_partition_get_size(pa) * t.sector_size;
    t.partitions.push_back(std::move(p));
  }
  return t;
}

// Makes a regular file exactly `size` bytes (sparse); checks a block device is big enough.
void prepare_target(const std::string& path, uint64_t disk_size) {
  UniqueFd fd = open_file(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) fail_errno("stat " + path, errno);
  if (S_ISREG(st.st_mode)) {
    if (::ftruncate(fd.get(), static_cast<off_t>(disk_size)) < 0)
      fail_errno("resize " + path + " to " + format_size(disk_size), errno);
    return;
  }
  if (!S_ISBLK(st.st_mode)) fail(path + " is neither a regular file nor a block device");
  const uint64_t have = fd_size(fd.get(), path);
  if (have < disk_size)
    fail(path + " is " + format_size(have) + " but the disk layout needs " +
         format_size(disk_size) + "; use a bigger device");
}

}  // namespace

const Partition* Table::find(std::string_view label) const {
  for (const auto& p : partitions)
    if (p.label == label) return &p;
  return nullptr;
}

const Partition* Table::by_number(int number) const {
  for (const auto& p : partitions)
    if (p.number == number) return &p;
  return nullptr;
}

Table read(const std::string& path) {
  Context c(path, /*readonly=*/true);
  return read_table(c, path);
}

Table create(const std::string& path, uint64_t disk_size, const Uuid& disk_uuid,
             const std::vector<NewPartition>& partitions) {
  for (size_t i = 0; i + 1 < partitions.size(); ++i)
    if (partitions[i].size == 0)
      fail("partition '" + partitions[i].label +
           "' has size 0 (rest of the disk) but is not the last one");
  prepare_target(path, disk_size);
  {
    Context c(path, /*readonly=*/false);
    fdisk_context* cxt = c.get();
    fdisk_enable_wipe(cxt, 1);  // clear stale filesystem/RAID signatures
    c.check(fdisk_create_disklabel(cxt, "gpt"), "creating a GPT");
    c.check(fdisk_set_disklabel_id_from_string(cxt, disk_uuid.str().c_str()),
            "setting the disk UUID");
    fdisk_label* lb = fdisk_get_label(cxt, nullptr);

    const uint64_t ss = fdisk_get_sector_size(cxt);
    const uint64_t align_sectors = kAlign / ss;
    const uint64_t last_lba = fdisk_get_last_lba(cxt);  // last usable sector before backup
    uint64_t next = align_up(fdisk_get_first_lba(cxt), align_sectors);

    for (size_t i = 0; i < partitions.size(); ++i) {
      const NewPartition& np = partitions[i];
      uint64_t sectors;
      if (np.size == 0) {
        if (next > last_lba) fail("no space left on " + path + " for partition '" + np.label + "'");
        sectors = (last_lba + 1 - next) / align_sectors * align_sectors;  // whole MiBs
        if (sectors == 0) sectors = last_lba + 1 - next;
      } else {
        sectors = align_up(np.size, kAlign) / ss;
      }
      if (next + sectors - 1 > last_lba)
        fail("partition '" + np.label + "' (" + format_size(sectors * ss) + ") does not fit on " +
             path + " (" + format_size(fdisk_get_nsectors(cxt) * ss) + "); use a bigger disk");

      PartitionPtr pa(fdisk_new_partition());
      if (!pa) fail("libfdisk: out of memory");
      fdisk_partition_set_partno(pa.get(), i);
      fdisk_partition_set_start(pa.get(), next);
      fdisk_partition_set_size(pa.get(), sectors);
      fdisk_partition_size_explicit(pa.get(), 1);  // no rounding by libfdisk
      fdisk_parttype* type = fdisk_label_parse_parttype(lb, np.type.str().c_str());
      if (!type) fail("libfdisk rejected partition type " + np.type.str());
      fdisk_partition_set_type(pa.get(), type);  // takes its own reference
      fdisk_unref_parttype(type);
      fdisk_partition_set_name(pa.get(), np.label.c_str());
      fdisk_partition_set_uuid(pa.get(), np.uuid.str().c_str());
      c.check(fdisk_add_partition(cxt, pa.get(), nullptr), "adding partition '" + np.label + "'");
      next = align_up(next + sectors, align_sectors);
    }
    c.write_and_close();
  }
  return read(path);
}

void set_partition_uuid(const std::string& path, int number, const Uuid& uuid) {
  // The lock lives on our own descriptor; libfdisk opens the device separately.
  UniqueFd lock = open_file(path, O_RDONLY | O_CLOEXEC);
  if (::flock(lock.get(), LOCK_EX) < 0) fail_errno("lock " + path, errno);

  Context c(path, /*readonly=*/false);
  const Table t = read_table(c, path);
  if (!t.by_number(number))
    fail(path + " has no partition " + std::to_string(number) + "; is it an osup disk?");
  PartitionPtr pa(fdisk_new_partition());
  if (!pa) fail("libfdisk: out of memory");
  fdisk_partition_set_uuid(pa.get(), uuid.str().c_str());
  c.check(fdisk_set_partition(c.get(), static_cast<size_t>(number - 1), pa.get()),
          "setting the UUID of partition " + std::to_string(number));
  c.write_and_close();
}

}  // namespace osup::gpt
