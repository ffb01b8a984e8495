// Shared by the boot/ tests: ESPs of each kind in scratch directories, and entry specs.
#pragma once

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "base/fd.h"
#include "base/process.h"
#include "boot/boot_control.h"
#include "boot/esp_access.h"
#include "boot/systemd_boot.h"
#include "tests/support/test_support.h"

namespace osup::test {

namespace fs = std::filesystem;
using layout::Slot;

constexpr uint64_t kMiB = 1024ull * 1024;

// A 64 MiB FAT32 file system at `offset` inside `path` (offset 0: the file is the FS).
inline void make_fat_image(const std::string& path, uint64_t offset) {
  const std::string fat = offset ? path + ".fat" : path;
  run_checked({"mkfs.vfat", "-F", "32", "-n", "OSUP-ESP", "-C", fat, "65536"});
  if (!offset) return;
  const std::string bytes = read_text_file(fat);
  UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
  pwrite_all(fd.get(), std::as_bytes(std::span(bytes.data(), bytes.size())), offset, path);
  fs::remove(fat);
}

// An ESP of either kind, in a scratch directory.
struct Esp {
  TempDir dir;
  std::string kind, image;
  uint64_t offset = 0;
  std::shared_ptr<EspAccess> esp;

  explicit Esp(const std::string& k) : kind(k) {
    if (kind == "mounted") {
      fs::create_directory(dir / "esp");
      esp = open_mounted_esp(dir / "esp");
    } else {
      image = dir / "disk.img";
      offset = kind == "image@1MiB" ? kMiB : 0;
      make_fat_image(image, offset);
      esp = open_image_esp(image, offset);
    }
  }
  // The file system is still consistent (image only; fsck.vfat needs the bare FS).
  void fsck() const {
    if (kind != "image@0") return;
    RunResult r = run({"fsck.vfat", "-n", image});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
  }
};

inline void add_kernels(EspAccess& esp) {
  esp.mkdirs("/osup/a");
  esp.mkdirs("/osup/b");
  esp.write_atomic("/osup/a/vmlinuz", "kernel a");
  esp.write_atomic("/osup/b/vmlinuz", "kernel b");
}

inline EntrySpec spec_for(Slot s, const std::string& version, int tries = 3) {
  const std::string c(1, layout::slot_char(s));
  return EntrySpec{"Osup Test", version, "/osup/" + c + "/vmlinuz", "/osup/" + c + "/initrd",
                   "quiet ro",  tries};
}

inline std::string entries(const EspAccess& esp) {
  std::string out;
  for (const auto& n : esp.list(kEntriesDir)) out += n + " ";
  return out;
}

}  // namespace osup::test
