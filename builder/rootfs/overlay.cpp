#include "builder/rootfs/overlay.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "builder/rootfs/disk_writer.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::string join_path(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : "/") + p;
  return s;
}

// resolve_in_root, but returning the path relative to ROOT ("" for ROOT itself).
std::string resolve_relative(const std::string& root, const std::string& path, bool follow_last) {
  std::vector<std::string> todo = split_path(path);
  std::reverse(todo.begin(), todo.end());  // a stack: next component at the back
  std::vector<std::string> done;
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.back());
    todo.pop_back();
    if (c == ".") continue;
    if (c == "..") {
      if (!done.empty()) done.pop_back();  // '..' at the root stays at the root
      continue;
    }
    const bool last = todo.empty();
    std::string host = root + "/" + join_path(done) + (done.empty() ? "" : "/") + c;
    struct stat st {};
    if ((!last || follow_last) && ::lstat(host.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      if (++links > 40)
        fail("too many levels of symbolic links resolving " + path + " inside " + root);
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlink(host.c_str(), target.data(), target.size());
      if (n < 0) fail_errno("readlink " + host, errno);
      target.resize(static_cast<size_t>(n));
      if (target.starts_with("/")) done.clear();  // absolute targets start at the root
      auto parts = split_path(target);
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.push_back(*it);
      continue;
    }
    done.push_back(std::move(c));
  }
  return join_path(done);
}

// Where REL lands inside the rootfs (the working directory), relative to it, or nullopt when
// nothing is to be written: an existing directory (or symlink to one) keeps the rootfs's
// owner and mode. Removes a file or symlink in the way so the write replaces it.
std::optional<std::string> overlay_target(const std::string& rel, const struct stat& sst) {
  // Parents resolve through the rootfs's own symlinks (/bin -> usr/bin) inside DEST.
  const fs::path relp(rel);
  const std::string parent = resolve_relative(".", relp.parent_path().string(), true);
  const std::string target = (parent.empty() ? "" : parent + "/") + relp.filename().string();
  struct stat st {};
  const bool exists = ::lstat(target.c_str(), &st) == 0;
  if (S_ISDIR(sst.st_mode)) {
    if (exists && S_ISDIR(st.st_mode)) return std::nullopt;
    if (exists && S_ISLNK(st.st_mode) &&
        fs::is_directory(fs::path(".") / resolve_relative(".", target, true)))
      return std::nullopt;  // a symlinked dir: children resolve through it
  } else if (exists && S_ISDIR(st.st_mode)) {
    fail("'" + rel + "' would replace the directory /" + target + " in the rootfs");
  }
  if (exists && !S_ISDIR(st.st_mode) && ::unlink(target.c_str()) != 0)
    fail_errno("unlink /" + target, errno);  // replace, never write through
  return target;
}

// Writes the overlay file SRC (stat SST) as TARGET, root-owned.
void write_overlay_entry(archive* out, archive_entry* e, const fs::path& src,
                         const struct stat& sst, const std::string& rel,
                         const std::string& target) {
  archive_entry_clear(e);
  archive_entry_copy_stat(e, &sst);
  archive_entry_set_pathname(e, target.c_str());
  archive_entry_set_uid(e, 0);
  archive_entry_set_gid(e, 0);
  archive_entry_set_nlink(e, 1);
  if (S_ISLNK(sst.st_mode)) archive_entry_set_symlink(e, fs::read_symlink(src).c_str());
  if (archive_write_header(out, e) != ARCHIVE_OK)
    fail("'" + rel + "': " + archive_error_string(out));
  if (S_ISREG(sst.st_mode)) {
    UniqueFd in = open_file(src.string(), O_RDONLY | O_CLOEXEC);
    std::vector<std::byte> buf(1 << 16);
    while (size_t n = read_full(in.get(), buf, src.string()))
      if (archive_write_data(out, buf.data(), n) != static_cast<la_ssize_t>(n))
        fail("'" + rel + "': " + archive_error_string(out));
  }
  if (archive_write_finish_entry(out) != ARCHIVE_OK)
    fail("'" + rel + "': " + archive_error_string(out));
}

}  // namespace

std::string resolve_in_root(const std::string& root, const std::string& path, bool follow_last) {
  std::string rel = resolve_relative(root, path, follow_last);
  return rel.empty() ? root : root + "/" + rel;
}

void apply_overlay(const std::string& overlay_dir, const std::string& dest) {
  with_context("applying overlay " + overlay_dir, [&] {
    if (!fs::is_directory(overlay_dir)) fail("not a directory");
    const fs::path src_root = fs::absolute(overlay_dir);
    // Walked with std::filesystem, not libarchive's disk reader: that one changes the
    // working directory while it traverses, and the writer depends on it being DEST.
    std::vector<fs::path> sources;
    for (const auto& e : fs::recursive_directory_iterator(src_root)) sources.push_back(e.path());
    WriteArchive out = disk_writer();
    ScopedChdir cd(dest);
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(),
                                                                    archive_entry_free);
    for (const fs::path& src : sources) {
      const std::string rel = src.lexically_relative(src_root).string();
      struct stat sst {};
      if (::lstat(src.c_str(), &sst) != 0) fail_errno("lstat " + src.string(), errno);
      if (const auto target = overlay_target(rel, sst))
        write_overlay_entry(out.get(), e.get(), src, sst, rel, *target);
    }
    if (archive_write_close(out.get()) != ARCHIVE_OK)
      fail(std::string("finishing: ") + archive_error_string(out.get()));
  });
}

}  // namespace osup::build
