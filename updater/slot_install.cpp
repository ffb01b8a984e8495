#include "updater/slot_install.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/arch.h"
#include "base/error.h"
#include "base/fault.h"
#include "base/size.h"
#include "boot/systemd_boot_uki.h"
#include "format/gpt.h"

namespace fs = std::filesystem;

namespace osup {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Opens the disk for slot writes: O_DIRECT where possible (several times faster here
// than buffered writes and it leaves the page cache alone), buffered otherwise (tmpfs).
UniqueFd open_for_writing(const std::string& disk, bool* direct) {
  int fd = ::open(disk.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) {
    *direct = true;
    return UniqueFd(fd);
  }
  *direct = false;
  return open_file(disk, O_RDWR);
}

void check_compatible(const OsupDisk& disk, const Manifest& m, const std::optional<Manifest>& cur,
                      bool allow_downgrade) {
  if (m.arch != arch_name(disk.arch))
    fail("bundle is for " + m.arch + " but this disk is " + arch_name(disk.arch) +
         "; use a bundle built with --arch " + arch_name(disk.arch));
  if (!cur) return;
  if (m.compatible != cur->compatible)
    fail("bundle is for '" + m.compatible + "' but this system runs '" + cur->compatible +
         "'; use a bundle built from this system's image spec");
  if (!allow_downgrade && compare_versions(m.version, cur->version) < 0)
    fail("bundle version " + m.version + " is older than the running " + cur->version +
         "; pass --allow-downgrade to install it anyway");
}

void check_fits(const OsupDisk& disk, const Manifest& m, layout::Slot target) {
  const SlotPartitions& sp = disk.slot(target);
  const Payload* root = m.find(PayloadKind::root);
  const Payload* hash = m.find(PayloadKind::verity);
  if (root->size > sp.root.size)
    fail("root image is " + format_size(root->size) + " but slot " + layout::root_label(target) +
         " holds " + format_size(sp.root.size) +
         "; build the image with a smaller rootfs or repartition");
  if (hash->size > sp.verity.size)
    fail("verity tree is " + format_size(hash->size) + " but " + layout::verity_label(target) +
         " holds " + format_size(sp.verity.size));
  if (m.verity.data_size != root->size || m.verity.hash_size != hash->size)
    fail("manifest is inconsistent: verity sizes do not match the payloads");
  if (!m.find(PayloadKind::kernel))
    fail("bundle " + m.name + " " + m.version +
         " carries no kernel, so the slot could not boot; build it from a rootfs with a kernel "
         "in /boot");
}

void check_entry_type(const BootControl& boot, const Manifest& m) {
  const bool uki_disk = boot.name() == kSystemdBootUki;
  if (m.has_ukis() && !uki_disk)
    fail("bundle " + m.name + " " + m.version +
         " boots signed UKIs (Secure Boot) but this disk boots with " + boot.name() +
         " entries; flash a Secure Boot image of it first (README \"Secure Boot keys\")");
  if (!m.has_ukis() && uki_disk)
    fail("bundle " + m.name + " " + m.version +
         " carries no signed UKIs but this disk boots only signed UKIs (Secure Boot); "
         "install a bundle built with the spec's secure_boot key");
}

// DPS pairing: the slot's partition UUIDs name the root hash it now holds.
void pair_partition_uuids(const OsupDisk& disk, layout::Slot target, const Digest& root_hash) {
  const SlotPartitions& sp = disk.slot(target);
  fault::point("set root partition uuid");
  gpt::set_partition_uuid(disk.path, sp.root.number, layout::root_partition_uuid(root_hash));
  fault::point("set verity partition uuid");
  gpt::set_partition_uuid(disk.path, sp.verity.number, layout::verity_partition_uuid(root_hash));
}

}  // namespace osup
