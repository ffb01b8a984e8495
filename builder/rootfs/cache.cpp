#include "builder/rootfs/cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "builder/rootfs/debootstrap.h"
#include "builder/rootfs/tarball.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

class KeyHasher {
 public:
  void add(std::string_view s) {
    h_.update(s);
    h_.update(std::string_view("\0", 1));  // separators keep ("ab","c") != ("a","bc")
  }
  void add_file(const fs::path& p) { add(to_hex(sha256_file(p.string()))); }
  std::string finish() { return to_hex(h_.finish()); }

 private:
  Sha256 h_;
};

// Every entry under DIR in a stable order: relative path, type, mode, and either the
// file's bytes (overlays: small, and a changed file must change the key) or its size and
// mtime (a directory source can be a whole rootfs; hashing it would cost a build).
void add_tree(KeyHasher& k, const fs::path& dir, bool contents) {
  std::vector<fs::path> entries;
  for (const auto& e : fs::recursive_directory_iterator(dir)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const fs::path& p : entries) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) fail("cannot stat " + p.string());
    k.add(fs::relative(p, dir).string());
    k.add(std::to_string(st.st_mode) + ":" + std::to_string(st.st_uid) + ":" +
          std::to_string(st.st_gid));
    if (S_ISLNK(st.st_mode)) {
      k.add(fs::read_symlink(p).string());
    } else if (S_ISREG(st.st_mode)) {
      if (contents) {
        k.add_file(p);
      } else {
        k.add(std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." +
              std::to_string(st.st_mtim.tv_nsec));
      }
    }
  }
}

}  // namespace

std::string cache_root() {
  if (const char* c = std::getenv("OSUP_CACHE_DIR"); c && *c) return c;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/osup";
  return "/var/cache/osup";
}

std::string hooked_rootfs_key(const Spec& spec, const std::optional<std::string>& deb) {
  KeyHasher k;
  k.add("osup-hooked-rootfs-v1");
  k.add(arch_name(spec.arch));
  k.add(spec.name);
  if (const auto* t = std::get_if<TarballSource>(&spec.rootfs)) {
    k.add("tarball");
    k.add_file(t->path);
  } else if (const auto* d = std::get_if<DirectorySource>(&spec.rootfs)) {
    k.add("directory");
    add_tree(k, d->path, false);
  } else {
    // The debootstrap cache path already encodes every bootstrap parameter.
    k.add("debootstrap");
    k.add(fs::path(debootstrap_cache_path(std::get<DebootstrapSource>(spec.rootfs), spec.arch))
              .filename()
              .string());
  }
  k.add("overlay");
  if (spec.overlay) add_tree(k, *spec.overlay, true);
  bool hooks_see_version = false;
  for (const fs::path& hook : spec.hooks) {
    k.add("hook");
    k.add_file(hook);
    hooks_see_version |=
        read_text_file(hook.string()).find("OSUP_IMAGE_VERSION") != std::string::npos;
  }
  if (hooks_see_version) k.add("version:" + spec.version);
  k.add("deb");
  if (deb) k.add_file(*deb);
  return k.finish();
}

std::string hooked_rootfs_cache_path(const Spec& spec, const std::string& key) {
  return cache_root() + "/rootfs/" + spec.name + "-" + arch_name(spec.arch) + "-" +
         key.substr(0, 16) + ".tar.zst";
}

void store_hooked_rootfs(const std::string& dir, const std::string& path) {
  try {
    const fs::path target(path);
    fs::create_directories(target.parent_path());
    create_tarball(dir, path);
    // "<name>-<arch>-" + 16 hex + ".tar.zst": drop the same image's older trees.
    const std::string name = target.filename().string();
    const std::string prefix =
        name.substr(0, name.size() - std::string("0123456789abcdef.tar.zst").size());
    for (const auto& e : fs::directory_iterator(target.parent_path())) {
      const std::string other = e.path().filename().string();
      if (other != name && other.size() == name.size() && other.rfind(prefix, 0) == 0)
        fs::remove(e.path());
    }
  } catch (const std::exception& e) {
    // The build itself is fine; only the next one gets slower.
    std::fprintf(stderr, "osup-build: warning: could not cache the built rootfs: %s\n", e.what());
  }
}

}  // namespace osup::build
