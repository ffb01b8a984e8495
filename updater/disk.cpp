#include "updater/disk.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "base/block_device.h"
#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "boot/fat_check.h"

namespace fs = std::filesystem;

namespace osup {
namespace {

const gpt::Partition& need(const gpt::Table& t, const std::string& disk, const std::string& label) {
  const gpt::Partition* p = t.find(label);
  if (!p) fail(disk + " has no partition labelled " + label + "; is it an osup disk?");
  return *p;
}

struct RootDevice {
  std::string disk;       // "/dev/vda"
  std::string partition;  // "/dev/vda2", or "" when / is not on a partition
};

// Follows device-mapper slaves (dm-verity over the root partition) down to a partition,
// then to its whole disk: the disk we booted from. dm-verity stacks on the data and the hash
// partition; the data (root) partition has the lower number in our layout, so it comes first.
RootDevice root_device() {
  const dev_t root = blockdev::device_of_path("/");
  const dev_t bottom = *blockdev::underlying_devices(root).begin();
  const auto name = blockdev::sysfs_name(bottom);
  if (!name)
    fail("/ is on device " + blockdev::devno_string(bottom) +
         ", which is not in /disk/dev/block;"
         " is /disk mounted?");
  RootDevice r;
  r.disk = "/dev/" + *name;
  if (blockdev::partition_number(bottom)) {
    r.partition = r.disk;
    r.disk = "/dev/" + blockdev::sysfs_name(blockdev::whole_disk(bottom)).value_or(*name);
  }
  return r;
}

// The GPT partition name of a partition device, read by libblkid ("root-a").
std::string partition_name(const std::string& device) {
  blkid_probe pr = blkid_new_probe_from_filename(device.c_str());
  if (!pr) return "";
  blkid_probe_enable_superblocks(pr, 0);
  blkid_probe_enable_partitions(pr, 1);
  blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
  std::string name;
  const char* value = nullptr;
  if (blkid_do_safeprobe(pr) == 0 &&
      blkid_probe_lookup_value(pr, "PART_ENTRY_NAME", &value, nullptr) == 0)
    name = value;
  blkid_free_probe(pr);
  return name;
}

// Where a partition of `disk` is mounted (its first mount), or "" when it is not.
std::string mountpoint_of(const std::string& disk, const gpt::Partition& part) {
  // The kernel names partitions sdaN / nvme0n1pN / vdaN; find them by number through sysfs.
  const auto disk_dev = blockdev::device_named(fs::path(disk).filename());
  const auto part_dev = disk_dev ? blockdev::partition_of(*disk_dev, part.number) : std::nullopt;
  if (!part_dev) return "";
  const auto mount = blockdev::find_mount(blockdev::read_mountinfo(), {*part_dev});
  return mount ? mount->mount_point : "";
}

// The /dev node of a partition of a live disk ("/dev/vda1"), or "" when sysfs has none.
std::string partition_node(const std::string& disk, const gpt::Partition& part) {
  const auto disk_dev = blockdev::device_named(fs::path(disk).filename());
  const auto part_dev = disk_dev ? blockdev::partition_of(*disk_dev, part.number) : std::nullopt;
  const auto name = part_dev ? blockdev::sysfs_name(*part_dev) : std::nullopt;
  return name ? "/dev/" + *name : "";
}

}  // namespace

std::optional<layout::Slot> slot_from_cmdline(const std::string& cmdline) {
  std::istringstream ss(cmdline);
  std::string word;
  std::optional<layout::Slot> slot;
  while (ss >> word)
    if (word.rfind("osup.slot=", 0) == 0) slot = layout::parse_slot(word.substr(10));
  return slot;
}

OsupDisk discover_disk(const DiscoverOptions& opts) {
  OsupDisk disk;
  disk.offline = opts.disk.has_value();
  if (disk.offline) {
    disk.path = *opts.disk;
  } else {
    std::string cmdline;
    try {
      cmdline = read_text_file(opts.proc_cmdline);
    } catch (const Error&) {
    }
    disk.booted = slot_from_cmdline(cmdline);
    if (!disk.booted)
      fail(
          "this system was not booted by osup (no osup.slot= on the kernel command line); use "
          "--disk to work on a disk image");
    RootDevice root = root_device();
    disk.path = root.disk;
    // The command line says which slot booted; the device under / must agree, or this
    // system was started some way osup does not understand and must not guess about.
    if (!root.partition.empty()) {
      std::string name = partition_name(root.partition);
      if (!name.empty() && name != layout::root_label(*disk.booted))
        fail("the kernel command line says slot " + layout::slot_name(*disk.booted) +
             " but / is on " + root.partition + " (" + name +
             "); reboot through the boot loader before updating");
    }
  }
  disk.table =
      with_context("reading partition table of " + disk.path, [&] { return gpt::read(disk.path); });
  disk.esp = need(disk.table, disk.path, layout::kEspLabel);
  disk.data = need(disk.table, disk.path, layout::kDataLabel);
  for (layout::Slot s : {layout::Slot::a, layout::Slot::b}) {
    SlotPartitions& sp = disk.slots[s == layout::Slot::a ? 0 : 1];
    sp.root = need(disk.table, disk.path, layout::root_label(s));
    sp.verity = need(disk.table, disk.path, layout::verity_label(s));
  }
  if (!layout::arch_of_root_type(disk.slots[0].root.type, &disk.arch))
    fail(disk.path + ": partition root-a has an unknown type " + disk.slots[0].root.type.str() +
         "; is it an osup disk?");

  std::string esp_mount = opts.esp_mount.value_or("");
  if (esp_mount.empty() && !disk.offline) esp_mount = mountpoint_of(disk.path, disk.esp);
  disk.esp_given = opts.esp_mount.has_value();
  disk.esp_mount = esp_mount;
  if (!esp_mount.empty())
    disk.esp_files = open_mounted_esp(esp_mount);
  else
    disk.esp_files = open_image_esp(disk.path, disk.esp.start);
  if (!disk.offline) disk.data_mount = mountpoint_of(disk.path, disk.data);
  return disk;
}

void require_sound_esp(const OsupDisk& disk) {
  if (disk.esp_given) return;
  if (!disk.esp_mount.empty()) {  // the kernel's dirty FAT and directory buffers to the disk
    const UniqueFd dir = open_file(disk.esp_mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (::syncfs(dir.get()) != 0) fail_errno("syncing the ESP at " + disk.esp_mount, errno);
  }
  const FatSource src{disk.path, disk.esp.start, !disk.offline};
  if (!disk.offline && disk.esp_mount.empty() && !fat_inconsistencies(src, 1).empty()) {
    // Live and unmounted (osup works on it through mtools): systemd-fsck checks the ESP
    // only when something mounts it, so osup does what that check would.
    const std::string dev = partition_node(disk.path, disk.esp);
    if (!dev.empty() && find_tool("fsck.vfat")) {
      const int rc = repair_fat(dev, src, disk.esp.size);
      std::fprintf(stderr, "osup: the ESP's FAT was inconsistent; ran fsck.vfat -a %s (exit %d)\n",
                   dev.c_str(), rc);
    }
  }
  require_consistent_fat(src, disk.esp_files->describe());
}

}  // namespace osup
