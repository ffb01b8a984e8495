#include "builder/rootfs/tarball.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/process.h"
#include "builder/rootfs/disk_writer.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

bool has_dotdot(const std::string& name) {
  for (const fs::path& part : fs::path(name))
    if (part == "..") return true;
  return false;
}

// Copies every data block (sparse-aware) of the current entry from reader to writer.
void copy_data(archive* in, archive* out, const std::string& entry) {
  const void* buf = nullptr;
  size_t size = 0;
  la_int64_t offset = 0;
  for (;;) {
    int r = archive_read_data_block(in, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) return;
    if (r < ARCHIVE_OK) fail("entry '" + entry + "': reading data: " + archive_error_string(in));
    if (archive_write_data_block(out, buf, size, offset) < ARCHIVE_OK)
      fail("entry '" + entry + "': " + archive_error_string(out));
  }
}

// libarchive refuses these too; checking first gives a message that says why.
void check_entry_name(archive_entry* e, const std::string& name) {
  if (name.starts_with("/"))
    fail("entry '" + name + "' has an absolute path; refusing an unsafe tarball");
  if (has_dotdot(name)) fail("entry '" + name + "' contains '..'; refusing an unsafe tarball");
  if (const char* l = archive_entry_hardlink(e)) {
    std::string link = l;
    if (link.starts_with("/") || has_dotdot(link))
      fail("entry '" + name + "' is a hard link to '" + link +
           "' outside the rootfs; refusing an unsafe tarball");
  }
}

void write_entry(archive* in, archive* out, archive_entry* e, const std::string& name) {
  // A warning here means lost metadata (xattrs, ownership, times): a broken rootfs, so fail.
  if (archive_write_header(out, e) != ARCHIVE_OK)
    fail("entry '" + name + "': " + archive_error_string(out));
  if (archive_entry_size(e) > 0 && archive_entry_filetype(e) == AE_IFREG &&
      !archive_entry_hardlink(e))
    copy_data(in, out, name);
  if (archive_write_finish_entry(out) != ARCHIVE_OK)
    fail("entry '" + name + "': " + archive_error_string(out));
}

}  // namespace

void extract_tarball(const std::string& tarball, const std::string& dest) {
  with_context("extracting " + tarball, [&] {
    ReadArchive in(archive_read_new(), archive_read_free);
    archive_read_support_filter_all(in.get());
    archive_read_support_format_tar(in.get());
    if (::access(tarball.c_str(), R_OK) != 0) fail_errno("cannot open it", errno);
    if (archive_read_open_filename(in.get(), tarball.c_str(), 1 << 16) != ARCHIVE_OK)
      fail(std::string("not a valid tar: ") + archive_error_string(in.get()));
    fs::create_directories(dest);
    WriteArchive out = disk_writer();
    ScopedChdir cd(dest);
    archive_entry* e = nullptr;
    for (;;) {
      int r = archive_read_next_header(in.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) fail(std::string("not a valid tar: ") + archive_error_string(in.get()));
      const char* p = archive_entry_pathname(e);
      const std::string name = p ? p : "";
      check_entry_name(e, name);
      write_entry(in.get(), out.get(), e, name);
    }
    if (archive_write_close(out.get()) != ARCHIVE_OK)
      fail(std::string("finishing: ") + archive_error_string(out.get()));
  });
}

void create_tarball(const std::string& dir, const std::string& out) {
  (void)require_tool("zstd");  // tar --zstd runs it; say which package is missing up front
  const std::string tmp = out + ".tmp." + std::to_string(::getpid());  // parallel builds
  run_checked({"tar", "--create", "--file=" + tmp, "--zstd", "--numeric-owner", "--xattrs",
               "--xattrs-include=*", "--acls", "--sparse", "-C", dir, "."});
  if (::rename(tmp.c_str(), out.c_str()) != 0) fail_errno("rename " + tmp + " to " + out, errno);
}

}  // namespace osup::build
