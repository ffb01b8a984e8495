// Block devices as the kernel describes them: mounts from /proc/self/mountinfo and the device
// tree in sysfs (partitions, whole disks, device-mapper stacking). The updater finds the disk
// it booted from with these; osup-build flash refuses disks that are in use.
//
// Every sysfs function takes the sysfs root so tests can walk a fake tree (there is no
// device-mapper on the test host); production code uses the default.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace osup::blockdev {

inline constexpr const char* kSysfs = "/sys";
inline constexpr const char* kMountinfo = "/proc/self/mountinfo";

// One line of mountinfo (proc(5)); paths have the kernel's \040-style escapes decoded.
struct Mount {
  dev_t device = 0;         // MAJ:MIN of the mounted file system
  std::string root;         // directory of that file system seen here: "/" unless a bind mount
  std::string mount_point;  // "/boot/efi"
  std::string fs_type;      // "" if the line has no " - " separator
  std::string source;       // "/dev/vda1"
};

// Mounts in mountinfo order. Lines without the five leading fields are skipped: the kernel
// writes this file, and a line we cannot read says nothing about the devices we look for.
[[nodiscard]] std::vector<Mount> parse_mountinfo(std::string_view text);
// Empty when PATH cannot be read (no /proc, e.g. in a bare chroot).
[[nodiscard]] std::vector<Mount> read_mountinfo(const std::string& path = kMountinfo);

// "8:1" and back; parse_devno accepts trailing whitespace (sysfs "dev" files end in "\n").
[[nodiscard]] std::string devno_string(dev_t dev);
[[nodiscard]] std::optional<dev_t> parse_devno(std::string_view text);

// The device of the file system that holds PATH (st_dev). Throws "stat PATH: reason".
[[nodiscard]] dev_t device_of_path(const std::string& path);

// The first mount of any of DEVICES, in mountinfo order.
[[nodiscard]] std::optional<Mount> find_mount(const std::vector<Mount>& mounts,
                                              const std::set<dev_t>& devices);

// Kernel name ("sda1", "nvme0n1p2", "dm-0"); nullopt when sysfs does not know the device.
[[nodiscard]] std::optional<std::string> sysfs_name(dev_t dev,
                                                    const std::filesystem::path& sysfs = kSysfs);
// The device number of a kernel name ("vda"), through /sys/class/block.
[[nodiscard]] std::optional<dev_t> device_named(const std::string& name,
                                                const std::filesystem::path& sysfs = kSysfs);

// Partition number (1-based); nullopt when DEV is not a partition.
[[nodiscard]] std::optional<int> partition_number(dev_t dev,
                                                  const std::filesystem::path& sysfs = kSysfs);
// The disk a partition is on; DEV itself when it is not a partition or sysfs does not know it.
[[nodiscard]] dev_t whole_disk(dev_t dev, const std::filesystem::path& sysfs = kSysfs);
// Partition NUMBER of DISK, if the kernel has it.
[[nodiscard]] std::optional<dev_t> partition_of(dev_t disk, int number,
                                                const std::filesystem::path& sysfs = kSysfs);

// The devices at the bottom of a device-mapper / md stack, following "slaves" recursively;
// {DEV} when nothing is stacked under it. Ordered by device number, so under dm-verity the
// data partition comes before its hash partition when it has the lower number.
[[nodiscard]] std::set<dev_t> underlying_devices(dev_t dev,
                                                 const std::filesystem::path& sysfs = kSysfs);
// DEV, its partitions, and everything stacked on those ("holders": dm-crypt, LVM, RAID),
// recursively: what must not be in use before DEV is overwritten.
[[nodiscard]] std::set<dev_t> devices_using(dev_t dev, const std::filesystem::path& sysfs = kSysfs);
// Is DEV, or any of devices_using(DEV), mounted? The first such mount.
[[nodiscard]] std::optional<Mount> mount_in_use(dev_t dev, const std::vector<Mount>& mounts,
                                                const std::filesystem::path& sysfs = kSysfs);

}  // namespace osup::blockdev
