// The EFI system partition as a small file store, so the boot-control backends work the
// same on a running system (ESP mounted at /boot or /efi) and offline on a disk image
// or an unmounted block device (`osup --disk`, the builder).
//
// Paths are absolute inside the ESP ("/loader/entries/osup-a.conf"). FAT compares names
// case-insensitively; list() returns names as the file system stores them. Every rename
// (also the one that ends write_atomic/copy_in) and every removal is a fault::point().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace osup {

class EspAccess {
 public:
  virtual ~EspAccess();

  // A short description for error messages ("ESP at /boot", "ESP in disk.img@1048576").
  [[nodiscard]] virtual std::string describe() const = 0;
  // Names (files and directories) in dir; a missing dir gives an empty list.
  [[nodiscard]] virtual std::vector<std::string> list(const std::string& dir) const = 0;
  // The file's content, or nullopt when it does not exist.
  [[nodiscard]] virtual std::optional<std::string> read(const std::string& path) const = 0;
  // Copies a file out to host_file (replaced); false when it does not exist. For big files
  // (kernel, initrd), where read() would hold the whole file in memory.
  virtual bool copy_out(const std::string& path, const std::string& host_file) const = 0;
  // Crash-safe replace: write "<path>.tmp", sync, rename over path, sync.
  virtual void write_atomic(const std::string& path, std::string_view content) = 0;
  // Copies a host file in with the same atomic pattern.
  virtual void copy_in(const std::string& host_file, const std::string& path) = 0;
  // Renames within the ESP (over an existing target), then syncs.
  virtual void rename(const std::string& from, const std::string& to) = 0;
  // Removes a file; a missing one is fine.
  virtual void remove(const std::string& path) = 0;
  // Creates dir and its parents; existing ones are fine.
  virtual void mkdirs(const std::string& dir) = 0;

  // Whether a file or directory exists (FAT names compare case-insensitively). Lists
  // the parent rather than reading, so it is cheap for kernels in an image.
  [[nodiscard]] bool exists(const std::string& path) const;
};

// A mounted ESP (/boot, /efi or any directory): POSIX calls with fsync of file and
// directory. Throws when mountpoint is not a directory.
[[nodiscard]] std::unique_ptr<EspAccess> open_mounted_esp(const std::string& mountpoint);

// The FAT file system at byte `offset` of a disk image file or an unmounted block
// device, through mtools (no loop devices, no mounts). The image is fsynced after
// every change.
[[nodiscard]] std::unique_ptr<EspAccess> open_image_esp(const std::string& image, uint64_t offset);

// FAT32 below this many bytes has too few clusters and firmware may take it for FAT16.
inline constexpr uint64_t kMinEspSize = 33ull << 20;

// A new, empty FAT32 image file of `size` bytes (sparse) labelled OSUP-ESP, its volume ID
// derived from `seed` (random when empty), opened for writing (the builder fills it with
// publish_slot and install_systemd_boot, the same code `osup switch` uses).
[[nodiscard]] std::unique_ptr<EspAccess> create_esp_image(const std::string& image, uint64_t size,
                                                          const std::string& seed);

}  // namespace osup
