#include "builder/flash.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <vector>

#include "builder/disk_image.h"
#include "format/error.h"
#include "format/fd.h"
#include "format/sha256.h"
#include "format/size.h"

namespace osup::build {

namespace {

namespace fs = std::filesystem;
constexpr size_t kChunk = 8 * 1024 * 1024;

std::string devno_str(dev_t d) { return std::to_string(major(d)) + ":" + std::to_string(minor(d)); }

fs::path sysfs_dir(dev_t d) { return fs::path("/sys/dev/block") / devno_str(d); }

dev_t read_devno(const fs::path& dev_file) {
  std::ifstream in(dev_file);
  unsigned maj = 0, min = 0;
  char colon = 0;
  if (!(in >> maj >> colon >> min) || colon != ':') return 0;
  return makedev(maj, min);
}

// The whole disk a block device belongs to (itself unless it is a partition).
dev_t whole_disk(dev_t d) {
  std::error_code ec;
  const fs::path dir = fs::canonical(sysfs_dir(d), ec);
  if (ec) return d;
  if (fs::exists(dir / "partition")) {
    if (dev_t parent = read_devno(dir.parent_path() / "dev")) return parent;
  }
  return d;
}

// The device itself, its partitions, and everything stacked on them (dm-crypt, LVM, RAID):
// if any of these is mounted, writing the device would pull the rug from under it.
void collect_users(dev_t d, std::set<dev_t>& out) {
  if (!out.insert(d).second) return;
  std::error_code ec;
  const fs::path dir = fs::canonical(sysfs_dir(d), ec);
  if (ec) return;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (fs::exists(e.path() / "partition"))
      if (dev_t p = read_devno(e.path() / "dev")) collect_users(p, out);
  }
  for (const auto& e : fs::directory_iterator(dir / "holders", ec))
    if (dev_t h = read_devno(e.path() / "dev")) collect_users(h, out);
}

// The disks under a device: through dm/md "slaves" down to the physical disks.
void collect_backing_disks(dev_t d, std::set<dev_t>& out) {
  std::error_code ec;
  const fs::path dir = fs::canonical(sysfs_dir(d), ec);
  bool stacked = false;
  if (!ec) {
    for (const auto& e : fs::directory_iterator(dir / "slaves", ec)) {
      if (dev_t s = read_devno(e.path() / "dev")) {
        stacked = true;
        collect_backing_disks(s, out);
      }
    }
  }
  if (!stacked) out.insert(whole_disk(d));
}

// mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...".
void refuse_if_mounted(const std::string& device, dev_t target) {
  std::set<dev_t> users;
  collect_users(target, users);
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mountpoint;
    if (!(ls >> id >> parent >> devno >> root >> mountpoint)) continue;
    unsigned maj = 0, min = 0;
    if (std::sscanf(devno.c_str(), "%u:%u", &maj, &min) != 2) continue;
    if (users.count(makedev(maj, min)))
      fail(device + " is in use: " + devno + " is mounted on " + mountpoint + "; unmount it first");
  }
}

void refuse_if_system_disk(const std::string& device, dev_t target) {
  struct stat root {};
  if (::stat("/", &root) < 0) fail_errno("stat /", errno);
  if (major(root.st_dev) == 0) return;  // tmpfs/overlay root: no disk to protect
  std::set<dev_t> system_disks;
  collect_backing_disks(root.st_dev, system_disks);
  if (system_disks.count(whole_disk(target)))
    fail("refusing to write " + device +
         ": it holds the running system's root filesystem; pick another device");
}

void confirm(const std::string& image, const std::string& device, const FlashOptions& o) {
  if (o.yes) return;
  if (!::isatty(STDIN_FILENO)) fail("refusing to overwrite " + device + " without --yes");
  std::cerr << "write " << image << " to " << device << ", destroying its contents? [y/N] "
            << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  if (answer != "y" && answer != "Y" && answer != "yes")
    fail("not writing " + device + ": not confirmed");
}

struct Extent {
  uint64_t offset, length;
};

// Hashes the given extents of fd in order; the same walk on image and device must agree.
Digest hash_extents(int fd, const std::vector<Extent>& extents, const std::string& what,
                    Progress& progress) {
  Sha256 h;
  std::vector<std::byte> buf(kChunk);
  for (const auto& e : extents) {
    for (uint64_t done = 0; done < e.length;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, e.length - done));
      const size_t got = pread_full(fd, std::span(buf.data(), want), e.offset + done, what);
      if (got != want)
        fail("read " + what + ": unexpected end at " + std::to_string(e.offset + done));
      h.update(std::span<const std::byte>(buf.data(), got));
      done += got;
      progress.advance(got);
    }
  }
  return h.finish();
}

}  // namespace

void flash(const std::string& image, const std::string& device, const FlashOptions& options) {
  UniqueFd in = open_file(image, O_RDONLY | O_CLOEXEC);
  struct stat ist {};
  if (::fstat(in.get(), &ist) < 0) fail_errno("stat " + image, errno);
  if (!S_ISREG(ist.st_mode)) fail(image + " is not a regular file; pass a disk image");
  const uint64_t image_size = static_cast<uint64_t>(ist.st_size);

  struct stat dst {};
  if (::stat(device.c_str(), &dst) < 0) fail_errno("stat " + device, errno);
  const bool block = S_ISBLK(dst.st_mode);
  if (!block && !S_ISREG(dst.st_mode))
    fail(device + " is neither a block device nor a regular file");
  if (!block && dst.st_dev == ist.st_dev && dst.st_ino == ist.st_ino)
    fail(image + " and " + device + " are the same file");

  if (block) {
    // Before asking anything: these refusals hold even with --yes.
    refuse_if_system_disk(device, dst.st_rdev);
    refuse_if_mounted(device, dst.st_rdev);
    UniqueFd probe = open_file(device, O_RDONLY | O_CLOEXEC);
    const uint64_t device_size = fd_size(probe.get(), device);
    if (image_size > device_size)
      fail("image is " + format_size(image_size) + " but " + device + " is " +
           format_size(device_size) + "; use a bigger device");
  }
  confirm(image, device, options);

  // O_EXCL on a block device: the kernel refuses if anything mounted or holds it.
  UniqueFd out = block ? open_file(device, O_RDWR | O_EXCL | O_CLOEXEC)
                       : open_file(device, O_RDWR | O_TRUNC | O_CLOEXEC);
  if (!block && ::ftruncate(out.get(), static_cast<off_t>(image_size)) < 0)
    fail_errno("resize " + device, errno);

  std::vector<Extent> extents;
  uint64_t data_bytes = 0;
  for_each_data_extent(in.get(), image_size, [&](uint64_t off, uint64_t len) {
    extents.push_back({off, len});
    data_bytes += len;
  });

  with_context("writing " + device, [&] {
    Progress progress("writing " + device, data_bytes, options.progress);
    std::vector<std::byte> buf(kChunk);
    for (const auto& e : extents) {
      for (uint64_t done = 0; done < e.length;) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, e.length - done));
        const size_t got =
            pread_full(in.get(), std::span(buf.data(), want), e.offset + done, image);
        if (got != want) fail("read " + image + ": file shrank while flashing");
        pwrite_all(out.get(), std::span<const std::byte>(buf.data(), got), e.offset + done, device);
        done += got;
        progress.advance(got);
      }
    }
    fsync_fd(out.get(), device);
    progress.finish();
  });

  with_context("verifying " + device, [&] {
    // Drop cached pages so the read-back comes from the device, not from memory.
    (void)::posix_fadvise(out.get(), 0, 0, POSIX_FADV_DONTNEED);
    if (block) (void)::ioctl(out.get(), BLKFLSBUF, 0);
    Progress progress("verifying " + device, 2 * data_bytes, options.progress);
    const Digest want = hash_extents(in.get(), extents, image, progress);
    const Digest got = hash_extents(out.get(), extents, device, progress);
    if (want != got)
      fail("read-back of " + device + " does not match " + image + " (SHA-256 " + to_hex(got) +
           " instead of " + to_hex(want) + "); the device may be failing, try another one");
  });

  // Let the kernel see the new partitions (fails harmlessly on devices without partitions).
  if (block) (void)::ioctl(out.get(), BLKRRPART, 0);
}

}  // namespace osup::build
