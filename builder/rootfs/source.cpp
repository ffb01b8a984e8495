#include "builder/rootfs/source.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

using ReadArchive = std::unique_ptr<archive, decltype(&archive_read_free)>;
using WriteArchive = std::unique_ptr<archive, decltype(&archive_write_free)>;

// libarchive resolves entry names against the working directory, and its SECURE_* checks
// only work on relative names, so extraction runs with DEST as the working directory.
class ScopedChdir {
 public:
  explicit ScopedChdir(const std::string& dir) : old_(open_file(".", O_RDONLY | O_DIRECTORY)) {
    if (::chdir(dir.c_str()) != 0) fail_errno("chdir " + dir, errno);
  }
  ~ScopedChdir() {
    if (::fchdir(old_.get()) != 0) std::perror("osup-build: restoring working directory");
  }
  ScopedChdir(const ScopedChdir&) = delete;
  ScopedChdir& operator=(const ScopedChdir&) = delete;

 private:
  UniqueFd old_;
};

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

bool has_dotdot(const std::string& name) {
  for (const auto& p : split_path(name))
    if (p == "..") return true;
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

constexpr int kDiskFlags = ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                           ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_SPARSE |
                           ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                           ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;

// No lookup functions are set on the writer: owners stay numeric, so the rootfs's uids never
// get mapped through the build host's /etc/passwd.
WriteArchive disk_writer() {
  WriteArchive w(archive_write_disk_new(), archive_write_free);
  if (!w) fail("libarchive: out of memory");
  archive_write_disk_set_options(w.get(), kDiskFlags);
  return w;
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

void require_empty_dir(const std::string& dest) {
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (!fs::is_directory(dest)) fail(dest + " is not a directory");
  if (!fs::is_empty(dest)) fail(dest + " is not empty; the rootfs must start from an empty folder");
}

std::string cache_root(const DebootstrapSource& d) {
  if (d.cache) return d.cache->string();
  if (const char* c = std::getenv("OSUP_CACHE_DIR"); c && *c) return c;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/osup";
  return "/var/cache/osup";
}

}  // namespace

std::string debootstrap_cache_path(const DebootstrapSource& d, Arch arch) {
  Sha256 h;
  auto add = [&](const std::string& s) {
    h.update(s);
    h.update(std::string_view("\0", 1));  // separators keep ("ab","c") != ("a","bc")
  };
  add("osup-debootstrap-v1");
  add(debian_arch(arch));
  add(d.suite);
  add(d.variant);
  add(d.mirror);
  for (const auto& c : d.components) add("component:" + c);
  auto pkgs = d.packages;
  std::sort(pkgs.begin(), pkgs.end());  // order of --include does not matter
  for (const auto& p : pkgs) add("package:" + p);
  Digest dg = h.finish();
  return cache_root(d) + "/debootstrap/" + d.suite + "-" + debian_arch(arch) + "-" +
         to_hex(dg).substr(0, 16) + ".tar.zst";
}

namespace {

void check_binfmt(Arch arch) {
  if (arch == host_arch()) return;
  const std::string entry = "/proc/sys/fs/binfmt_misc/qemu-" + arch_name(arch);
  if (::access(entry.c_str(), F_OK) != 0)
    fail("building a " + arch_name(arch) + " rootfs on a " + arch_name(host_arch()) +
         " host needs qemu-user-static registered with binfmt_misc (" + entry +
         " is missing); install qemu-user-static, mount binfmt_misc (mount -t binfmt_misc "
         "binfmt_misc /proc/sys/fs/binfmt_misc) and run update-binfmts --enable qemu-" +
         arch_name(arch));
}

void run_debootstrap(const DebootstrapSource& d, Arch arch, const std::string& dest) {
  check_binfmt(arch);
  std::vector<std::string> argv = {"debootstrap", "--arch=" + debian_arch(arch)};
  if (!d.variant.empty()) argv.push_back("--variant=" + d.variant);
  std::string comps;
  for (const auto& c : d.components) comps += (comps.empty() ? "" : ",") + c;
  argv.push_back("--components=" + comps);
  if (!d.packages.empty()) {
    std::string inc;
    for (const auto& p : d.packages) inc += (inc.empty() ? "" : ",") + p;
    argv.push_back("--include=" + inc);
  }
  argv.insert(argv.end(), {d.suite, dest, d.mirror});
  RunResult r = run(argv);
  if (r.exit_code != 0) {
    std::string tail = r.err.empty() ? r.out : r.err;
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    if (auto p = tail.rfind('\n'); p != std::string::npos) tail = tail.substr(p + 1);
    fail("debootstrap " + d.suite + " (" + debian_arch(arch) + ") failed (exit " +
         std::to_string(r.exit_code) + "): " + tail + "; see " + dest +
         "/debootstrap/debootstrap.log");
  }
}

void populate_debootstrap(const DebootstrapSource& d, Arch arch, const std::string& dest) {
  const std::string cached = debootstrap_cache_path(d, arch);
  if (fs::exists(cached)) {
    with_context("extracting cached debootstrap " + cached, [&] { extract_tarball(cached, dest); });
    return;
  }
  with_context("bootstrapping Debian", [&] { run_debootstrap(d, arch, dest); });
  try {
    fs::create_directories(fs::path(cached).parent_path());
    create_tarball(dest, cached);
  } catch (const std::exception& e) {
    // The rootfs is fine; only the next build gets slower.
    std::fprintf(stderr, "osup-build: warning: could not cache the debootstrap result: %s\n",
                 e.what());
  }
}

}  // namespace

std::string resolve_in_root(const std::string& root, const std::string& path, bool follow_last) {
  std::string rel = resolve_relative(root, path, follow_last);
  return rel.empty() ? root : root + "/" + rel;
}

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
      // libarchive refuses these too; checking first gives a message that says why.
      if (name.starts_with("/"))
        fail("entry '" + name + "' has an absolute path; refusing an unsafe tarball");
      if (has_dotdot(name)) fail("entry '" + name + "' contains '..'; refusing an unsafe tarball");
      if (const char* l = archive_entry_hardlink(e)) {
        std::string link = l;
        if (link.starts_with("/") || has_dotdot(link))
          fail("entry '" + name + "' is a hard link to '" + link +
               "' outside the rootfs; refusing an unsafe tarball");
      }
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
      const bool is_dir = S_ISDIR(sst.st_mode);

      // Parents resolve through the rootfs's own symlinks (/bin -> usr/bin) inside DEST.
      const fs::path relp(rel);
      const std::string parent = resolve_relative(".", relp.parent_path().string(), true);
      const std::string target = (parent.empty() ? "" : parent + "/") + relp.filename().string();
      struct stat st {};
      const bool exists = ::lstat(target.c_str(), &st) == 0;
      if (is_dir) {
        if (exists && S_ISDIR(st.st_mode)) continue;  // keep the rootfs's owner and mode
        if (exists && S_ISLNK(st.st_mode) &&
            fs::is_directory(fs::path(".") / resolve_relative(".", target, true)))
          continue;  // a symlinked dir: children resolve through it
      } else if (exists && S_ISDIR(st.st_mode)) {
        fail("'" + rel + "' would replace the directory /" + target + " in the rootfs");
      }
      if (exists && !S_ISDIR(st.st_mode) && ::unlink(target.c_str()) != 0)
        fail_errno("unlink /" + target, errno);  // replace, never write through

      archive_entry_clear(e.get());
      archive_entry_copy_stat(e.get(), &sst);
      archive_entry_set_pathname(e.get(), target.c_str());
      archive_entry_set_uid(e.get(), 0);
      archive_entry_set_gid(e.get(), 0);
      archive_entry_set_nlink(e.get(), 1);
      if (S_ISLNK(sst.st_mode)) archive_entry_set_symlink(e.get(), fs::read_symlink(src).c_str());
      if (archive_write_header(out.get(), e.get()) != ARCHIVE_OK)
        fail("'" + rel + "': " + archive_error_string(out.get()));
      if (S_ISREG(sst.st_mode)) {
        UniqueFd in = open_file(src.string(), O_RDONLY | O_CLOEXEC);
        std::vector<std::byte> buf(1 << 16);
        while (size_t n = read_full(in.get(), buf, src.string()))
          if (archive_write_data(out.get(), buf.data(), n) != static_cast<la_ssize_t>(n))
            fail("'" + rel + "': " + archive_error_string(out.get()));
      }
      if (archive_write_finish_entry(out.get()) != ARCHIVE_OK)
        fail("'" + rel + "': " + archive_error_string(out.get()));
    }
    if (archive_write_close(out.get()) != ARCHIVE_OK)
      fail(std::string("finishing: ") + archive_error_string(out.get()));
  });
}

void run_hooks(const Spec& spec, const std::string& dest) {
  // Mounts live in a private namespace and vanish with it. /dev is a tmpfs with bind mounts
  // of a few nodes, so a hook's `rm -rf /dev/*` can never reach the host's devices.
  static const char* kSetup = R"(set -e
r="$1"; hook="$2"
mount -t proc proc "$r/proc"
mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || true
mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
for n in null zero full random urandom tty; do
  : > "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"
done
ln -s /proc/self/fd "$r/dev/fd"; mkdir "$r/dev/pts" "$r/dev/shm"
# A clean environment: nothing of the build host's (TMPDIR, LANG, ...) leaks into the image.
exec env -i PATH="$PATH" HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive TERM="${TERM:-dumb}" \
  OSUP_IMAGE_NAME="$OSUP_IMAGE_NAME" OSUP_IMAGE_VERSION="$OSUP_IMAGE_VERSION" \
  OSUP_IMAGE_ARCH="$OSUP_IMAGE_ARCH" chroot "$r" /bin/sh -c "$hook"
)";
  for (size_t i = 0; i < spec.hooks.size(); ++i) {
    const std::string hook = spec.hooks[i].string();
    with_context("hook " + hook, [&] {
      for (const char* d : {"proc", "sys", "dev", "tmp"}) {
        // These must be real directories inside DEST: a symlink could point a mount at the host.
        const std::string p = dest + "/" + d;
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0) {
          fs::create_directory(p);
        } else if (!S_ISDIR(st.st_mode)) {
          fail("/" + std::string(d) + " in the rootfs is not a directory");
        }
      }
      const std::string inside = "/tmp/osup-hook-" + std::to_string(i);
      fs::copy_file(hook, dest + inside, fs::copy_options::overwrite_existing);
      fs::permissions(dest + inside, fs::perms(0755));
      RunOptions opts;
      opts.env = {{"OSUP_IMAGE_NAME", spec.name},
                  {"OSUP_IMAGE_VERSION", spec.version},
                  {"OSUP_IMAGE_ARCH", arch_name(spec.arch)},
                  {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
      RunResult r = run({"unshare", "--mount", "--propagation", "private", "sh", "-c", kSetup,
                         "osup-hook", fs::absolute(dest).string(), inside},
                        opts);
      fs::remove(dest + inside);
      if (r.exit_code != 0) {
        std::string tail = r.err.empty() ? r.out : r.err;
        while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
        if (auto p = tail.rfind('\n'); p != std::string::npos) tail = tail.substr(p + 1);
        fail("failed (exit " + std::to_string(r.exit_code) + ")" +
             (tail.empty() ? "" : ": " + tail) + "; fix the hook script");
      }
    });
  }
}

void populate_rootfs(const Spec& spec, const std::string& dest) {
  require_empty_dir(dest);
  if (const auto* t = std::get_if<TarballSource>(&spec.rootfs)) {
    extract_tarball(t->path.string(), dest);
  } else if (const auto* d = std::get_if<DirectorySource>(&spec.rootfs)) {
    with_context("copying rootfs directory " + d->path.string(), [&] {
      // dest is empty and ours, so cp cannot be tricked into writing through a symlink.
      run_checked({"cp", "-a", "--reflink=auto", d->path.string() + "/.", dest + "/"});
    });
  } else {
    populate_debootstrap(std::get<DebootstrapSource>(spec.rootfs), spec.arch, dest);
  }
}

}  // namespace osup::build
