#include "builder/flash.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <set>
#include <vector>

#include "base/block_device.h"
#include "base/error.h"
#include "base/fd.h"
#include "base/size.h"
#include "builder/image/disk.h"
#include "format/sha256.h"

namespace osup::build {

namespace {

constexpr size_t kChunk = size_t{8} * 1024 * 1024;

// If DEVICE, a partition of it, or anything stacked on those is mounted, writing it would
// pull the rug from under that file system.
void refuse_if_mounted(const std::string& device, dev_t target) {
  if (auto m = blockdev::mount_in_use(target, blockdev::read_mountinfo())) {
    // Named as the user knows it (/dev/loop2p6), not by its device number.
    const auto name = blockdev::sysfs_name(m->device);
    const std::string what = name                             ? "/dev/" + *name
                             : m->source.starts_with("/dev/") ? m->source
                                                              : blockdev::devno_string(m->device);
    fail(device + " is in use: " + what + " is mounted on " + m->mount_point +
         "; unmount it first");
  }
}

void refuse_if_system_disk(const std::string& device, dev_t target) {
  const dev_t root = blockdev::device_of_path("/");
  if (major(root) == 0) return;  // tmpfs/overlay root: no disk to protect
  // The disks under / (through dm/md down to the physical disks).
  std::set<dev_t> system_disks;
  for (dev_t d : blockdev::underlying_devices(root)) system_disks.insert(blockdev::whole_disk(d));
  if (system_disks.count(blockdev::whole_disk(target)))
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

// Copies the extents of the image (fd `in`) to the same offsets of the target.
void copy_extents(int in, const std::string& image, int out, const std::string& device,
                  const std::vector<Extent>& extents, Progress& progress) {
  std::vector<std::byte> buf(kChunk);
  for (const auto& e : extents) {
    for (uint64_t done = 0; done < e.length;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, e.length - done));
      const size_t got = pread_full(in, std::span(buf.data(), want), e.offset + done, image);
      if (got != want) fail("read " + image + ": file shrank while flashing");
      pwrite_all(out, std::span<const std::byte>(buf.data(), got), e.offset + done, device);
      done += got;
      progress.advance(got);
    }
  }
}

}  // namespace

FlashResult flash(const std::string& image, const std::string& device,
                  const FlashOptions& options) {
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

  // O_EXCL on a block device: the kernel refuses if anything mounted or holds it. A regular
  // file is treated like a disk: emptied (no old bytes in the image's holes), but it keeps
  // its size when that is larger than the image, as a bigger disk would.
  UniqueFd out = block ? open_file(device, O_RDWR | O_EXCL | O_CLOEXEC)
                       : open_file(device, O_RDWR | O_TRUNC | O_CLOEXEC);
  FlashResult result{.image_size = image_size, .target_size = image_size};
  if (!block) {
    result.target_size = std::max(image_size, static_cast<uint64_t>(dst.st_size));
    if (::ftruncate(out.get(), static_cast<off_t>(result.target_size)) < 0)
      fail_errno("resize " + device, errno);
  } else {
    result.target_size = fd_size(out.get(), device);
  }

  std::vector<Extent> extents;
  uint64_t data_bytes = 0;
  for_each_data_extent(in.get(), image_size, [&](uint64_t off, uint64_t len) {
    extents.push_back({off, len});
    data_bytes += len;
  });
  result.data_bytes = data_bytes;

  with_context("writing " + device, [&] {
    Progress progress("writing " + device, data_bytes, options.progress);
    copy_extents(in.get(), image, out.get(), device, extents, progress);
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
  return result;
}

std::string describe(const FlashResult& r, const std::string& image, const std::string& device) {
  std::string line = "wrote " + image + " to " + device + " (" + format_size(r.data_bytes) +
                     " of data) and read it back: identical";
  if (r.target_size > r.image_size)
    line += "; " + device + " is " + format_size(r.target_size) + ", the image " +
            format_size(r.image_size) + ": the data partition grows to fill it on first boot";
  return line;
}

}  // namespace osup::build
