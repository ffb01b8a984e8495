#include "builder/esp.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "format/disk_layout.h"
#include "format/error.h"
#include "format/fd.h"
#include "format/process.h"
#include "format/size.h"
#include "format/uuid.h"

namespace osup::build {

namespace {

// mtools refuses images whose geometry it cannot check unless told not to.
RunOptions mtools_options() {
  RunOptions o;
  o.env["MTOOLS_SKIP_CHECK"] = "1";
  return o;
}

void check_dest(const std::string& dest) {
  if (dest.size() < 2 || dest[0] != '/' || dest.back() == '/' ||
      dest.find("//") != std::string::npos || dest.find("/../") != std::string::npos ||
      dest.find("/./") != std::string::npos)
    fail("invalid ESP path '" + dest + "'; use an absolute file path like /EFI/BOOT/BOOTX64.EFI");
}

// Every directory above dest ("/a/b/c" -> "/a", "/a/b"), shortest first.
void add_parents(const std::string& dest, std::set<std::string>& dirs) {
  for (size_t pos = dest.find('/', 1); pos != std::string::npos; pos = dest.find('/', pos + 1))
    dirs.insert(dest.substr(0, pos));
}

std::string volume_id(const std::string& seed) {
  const Uuid u = seed.empty() ? Uuid::random() : Uuid::derived(seed, "esp-volume-id");
  char buf[9];
  std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x", u.bytes[0], u.bytes[1], u.bytes[2],
                u.bytes[3]);
  return buf;
}

void copy_in(const std::string& image, const std::string& source, const std::string& dest) {
  // -o: overwrite instead of prompting when two entries name the same file.
  run_checked({"mcopy", "-o", "-i", image, source, "::" + dest}, mtools_options());
}

}  // namespace

void build_esp(const std::string& image_path, uint64_t size, const EspContents& contents,
               const std::string& seed) {
  if (size < kMinEspSize)
    fail("esp size " + format_size(size) + " is too small for FAT32 (at least " +
         format_size(kMinEspSize) + "); raise disk.esp");
  with_context("building the ESP image " + image_path, [&] {
    std::set<std::string> dirs;
    std::vector<std::string> dests;
    for (const auto& f : contents.files) dests.push_back(f.dest);
    for (const auto& t : contents.texts) dests.push_back(t.first);
    for (const auto& d : dests) {
      check_dest(d);
      add_parents(d, dirs);
    }

    std::filesystem::remove(image_path);
    {
      UniqueFd fd = open_file(image_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
        fail_errno("resize " + image_path, errno);
    }
    // --invariant also fixes the volume ID, so our -i has to come after it.
    run_checked({"mkfs.vfat", "-F", "32", "-n", layout::kEspFsLabel, "--invariant", "-i",
                 volume_id(seed), image_path});

    // std::set orders "/EFI" before "/EFI/BOOT": parents are made first.
    for (const auto& d : dirs) run_checked({"mmd", "-i", image_path, "::" + d}, mtools_options());
    for (const auto& f : contents.files) {
      if (!std::filesystem::is_regular_file(f.source_path))
        fail("ESP file " + f.source_path + " (for " + f.dest + ") is missing or not a file");
      with_context("copying " + f.source_path + " to " + f.dest,
                   [&] { copy_in(image_path, f.source_path, f.dest); });
    }
    if (!contents.texts.empty()) {
      // Text files are staged next to the image so mcopy can read them.
      const std::string staging = image_path + ".text";
      struct Cleanup {
        std::string p;
        ~Cleanup() { std::filesystem::remove(p); }
      } cleanup{staging};
      for (const auto& [dest, text] : contents.texts) {
        atomic_write_file(staging, text);
        with_context("writing " + dest, [&] { copy_in(image_path, staging, dest); });
      }
    }
  });
}

}  // namespace osup::build
