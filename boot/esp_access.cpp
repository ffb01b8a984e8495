#include "boot/esp_access.h"

#include <dirent.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "base/fault.h"
#include "base/fd.h"
#include "base/process.h"
#include "base/size.h"
#include "format/disk_layout.h"
#include "format/uuid.h"

namespace osup {

EspAccess::~EspAccess() = default;

bool EspAccess::exists(const std::string& path) const {
  const std::filesystem::path p(path);
  const std::string name = p.filename().string();
  if (name.empty()) return true;  // the root
  const auto names = list(p.parent_path().string());
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) {
    return strcasecmp(n.c_str(), name.c_str()) == 0;
  });
}

namespace {

// The one rule for ESP paths: absolute, and no empty, "." or ".." component, so a path
// names one place inside the ESP and never climbs out of it. "/" is the root.
std::string checked(const std::string& path) {
  auto bad = [&](const char* why) {
    fail("invalid ESP path '" + path + "' (" + why +
         "); use an absolute path like /loader/entries/x.conf");
  };
  if (path.empty() || path[0] != '/') bad("not absolute");
  if (path == "/") return path;
  for (size_t pos = 0; pos != std::string::npos;) {
    const size_t next = path.find('/', pos + 1);
    const std::string part =
        path.substr(pos + 1, next == std::string::npos ? next : next - pos - 1);
    if (part.empty()) bad("empty component");
    if (part == "." || part == "..") bad("'.' or '..' component");
    pos = next;
  }
  return path;
}

// Crash tests stop the process here (base/fault.h): each rename or removal on the
// ESP is a step after which a power cut must leave a bootable machine.
void fault_point(const char* op, const std::string& path) {
  const std::string name = std::string("esp ") + op + " " + path;
  fault::point(name.c_str());
}

std::string parent_of(const std::string& path) {
  std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "/" : p;
}

class MountedEsp final : public EspAccess {
 public:
  explicit MountedEsp(std::string root) : root_(std::move(root)) {}

  std::string describe() const override { return "ESP at " + root_; }

  std::vector<std::string> list(const std::string& dir) const override {
    std::vector<std::string> names;
    const std::string host = host_path(dir);
    DIR* d = ::opendir(host.c_str());
    if (!d) {
      if (errno == ENOENT || errno == ENOTDIR) return names;
      fail_errno("list " + host, errno);
    }
    while (const dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  std::optional<std::string> read(const std::string& path) const override {
    const std::string host = host_path(path);
    struct stat st {};
    if (::stat(host.c_str(), &st) < 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
      fail_errno("stat " + host, errno);
    }
    if (S_ISDIR(st.st_mode)) return std::nullopt;
    return read_text_file(host);
  }

  bool copy_out(const std::string& path, const std::string& host_file) const override {
    const std::string host = host_path(path);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(host, ec)) return false;
    std::filesystem::copy_file(host, host_file, std::filesystem::copy_options::overwrite_existing,
                               ec);
    if (ec) fail("copy " + host + " to " + host_file + ": " + ec.message());
    return true;
  }

  void write_atomic(const std::string& path, std::string_view content) override {
    const std::string tmp = host_path(path) + ".tmp";
    {
      UniqueFd out = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      write_all(out.get(), std::as_bytes(std::span(content.data(), content.size())), tmp);
      fsync_fd(out.get(), tmp);
    }
    rename(path + ".tmp", path);
  }

  void copy_in(const std::string& host_file, const std::string& path) override {
    const std::string tmp = host_path(path) + ".tmp";
    {
      UniqueFd in = open_file(host_file, O_RDONLY);
      UniqueFd out = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      std::vector<std::byte> buf(1 << 20);
      for (;;) {
        size_t n = read_full(in.get(), buf, host_file);
        write_all(out.get(), std::span(buf.data(), n), tmp);
        if (n < buf.size()) break;
      }
      fsync_fd(out.get(), tmp);
    }
    rename(path + ".tmp", path);
  }

  void rename(const std::string& from, const std::string& to) override {
    fault_point("rename", to);
    const std::string f = host_path(from), t = host_path(to);
    if (::rename(f.c_str(), t.c_str()) < 0) fail_errno("rename " + f + " to " + t, errno);
    fsync_dir(parent_of(t));
    if (parent_of(f) != parent_of(t)) fsync_dir(parent_of(f));
  }

  void remove(const std::string& path) override {
    const std::string host = host_path(path);
    if (::access(host.c_str(), F_OK) == 0) fault_point("remove", path);
    if (::unlink(host.c_str()) < 0) {
      if (errno == ENOENT) return;
      fail_errno("remove " + host, errno);
    }
    fsync_dir(parent_of(host));
  }

  void mkdirs(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(host_path(dir), ec);
    if (ec) fail("create directory " + host_path(dir) + ": " + ec.message());
  }

 private:
  std::string host_path(const std::string& path) const { return root_ + checked(path); }
  std::string root_;
};

// mtools addresses a file system inside a file as "-i IMAGE@@OFFSET"; paths are "::/x".
class ImageEsp final : public EspAccess {
 public:
  ImageEsp(std::string image, uint64_t offset)
      : image_(std::move(image)), spec_(image_ + "@@" + std::to_string(offset)) {}

  std::string describe() const override { return "ESP in " + spec_; }

  std::vector<std::string> list(const std::string& dir) const override {
    RunResult r = mtool({"mdir", "-b", "-i", spec_, "::" + checked(dir)});
    std::vector<std::string> names;
    if (r.exit_code != 0) {
      if (not_found(r)) return names;
      failed("mdir", dir, r);
    }
    // One "::/dir/name" per line; directories end in '/'.
    size_t start = 0;
    while (start < r.out.size()) {
      size_t end = r.out.find('\n', start);
      if (end == std::string::npos) end = r.out.size();
      std::string line = r.out.substr(start, end - start);
      start = end + 1;
      while (!line.empty() && (line.back() == '/' || line.back() == '\r')) line.pop_back();
      if (line.empty()) continue;
      std::string name = line.substr(line.rfind('/') + 1);
      if (!name.empty() && name != "." && name != "..") names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::optional<std::string> read(const std::string& path) const override {
    RunResult r = mtool({"mcopy", "-n", "-i", spec_, "::" + checked(path), "-"});
    if (r.exit_code != 0) {
      if (not_found(r)) return std::nullopt;
      failed("mcopy", path, r);
    }
    return r.out;
  }

  bool copy_out(const std::string& path, const std::string& host_file) const override {
    RunResult r = mtool({"mcopy", "-o", "-n", "-i", spec_, "::" + checked(path), host_file});
    if (r.exit_code != 0) {
      if (not_found(r)) return false;
      failed("mcopy", path, r);
    }
    return true;
  }

  void write_atomic(const std::string& path, std::string_view content) override {
    // Through a host temp file rather than mcopy's stdin: a failing mcopy exits before
    // reading its input, and the writer would die of SIGPIPE.
    const char* base = std::getenv("TMPDIR");
    std::string host = std::string(base && *base ? base : "/tmp") + "/osup-esp-XXXXXX";
    UniqueFd fd(::mkstemp(host.data()));
    if (!fd.valid()) fail_errno("create a temporary file in " + host, errno);
    struct Unlink {
      std::string p;
      ~Unlink() { ::unlink(p.c_str()); }
    } cleanup{host};
    write_all(fd.get(), std::as_bytes(std::span(content.data(), content.size())), host);
    put(host, path);
  }

  void copy_in(const std::string& host_file, const std::string& path) override {
    if (::access(host_file.c_str(), R_OK) < 0) fail_errno("open " + host_file, errno);
    put(host_file, path);
  }

  void rename(const std::string& from, const std::string& to) override {
    fault_point("rename", to);
    // mmove -D o replaces an existing target; within one directory it rewrites the
    // directory entry in place.
    check("mmove", to,
          mtool({"mmove", "-D", "o", "-i", spec_, "::" + checked(from), "::" + checked(to)}));
    sync();
  }

  void remove(const std::string& path) override {
    if (!exists(path)) return;
    fault_point("remove", path);
    RunResult r = mtool({"mdel", "-i", spec_, "::" + checked(path)});
    if (r.exit_code != 0 && !not_found(r)) failed("mdel", path, r);
    sync();
  }

  void mkdirs(const std::string& dir) override {
    std::string sofar;
    for (const auto& part : std::filesystem::path(checked(dir)).relative_path()) {
      if (part.empty()) continue;
      const std::string parent = sofar.empty() ? "/" : sofar;
      sofar += "/" + part.string();
      const auto names = list(parent);
      const bool have = std::any_of(names.begin(), names.end(), [&](const std::string& n) {
        return strcasecmp(n.c_str(), part.c_str()) == 0;
      });
      if (!have) check("mmd", sofar, mtool({"mmd", "-i", spec_, "::" + sofar}));
    }
    sync();
  }

 private:
  // Copy to "<path>.tmp", sync, then rename over path, sync.
  void put(const std::string& source, const std::string& path) {
    const std::string tmp = checked(path) + ".tmp";
    check("mcopy", tmp, mtool({"mcopy", "-o", "-n", "-i", spec_, source, "::" + tmp}));
    sync();
    rename(tmp, path);
  }

  RunResult mtool(const std::vector<std::string>& argv, RunOptions o = {}) const {
    // The image is not listed in mtools.conf; skip its sanity checks of the geometry.
    o.env["MTOOLS_SKIP_CHECK"] = "1";
    return run(argv, o);
  }

  static bool not_found(const RunResult& r) { return r.err.find("not found") != std::string::npos; }

  void check(const std::string& tool, const std::string& path, const RunResult& r) const {
    if (r.exit_code != 0) failed(tool, path, r);
  }

  [[noreturn]] void failed(const std::string& tool, const std::string& path,
                           const RunResult& r) const {
    fail(tool + " on " + path + " in " + spec_ + " failed (exit " + std::to_string(r.exit_code) +
         "): " + last_line(r.err) + "; is there a FAT file system at that offset?");
  }

  // mtools writes through the page cache and never syncs.
  void sync() const {
    UniqueFd fd = open_file(image_, O_RDONLY);
    fsync_fd(fd.get(), image_);
  }

  std::string image_, spec_;
};

}  // namespace

std::unique_ptr<EspAccess> open_mounted_esp(const std::string& mountpoint) {
  struct stat st {};
  if (::stat(mountpoint.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    fail("ESP mount point " + mountpoint + " is not a directory; is the ESP mounted?");
  std::string root = mountpoint;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root == "/") root.clear();
  return std::make_unique<MountedEsp>(root);
}

std::unique_ptr<EspAccess> open_image_esp(const std::string& image, uint64_t offset) {
  (void)require_tool("mcopy");
  struct stat st {};
  if (::stat(image.c_str(), &st) < 0) fail_errno("open disk image " + image, errno);
  return std::make_unique<ImageEsp>(image, offset);
}

std::unique_ptr<EspAccess> create_esp_image(const std::string& image, uint64_t size,
                                            const std::string& seed) {
  if (size < kMinEspSize)
    fail("esp size " + format_size(size) + " is too small for FAT32 (at least " +
         format_size(kMinEspSize) + "); raise disk.esp");
  with_context("creating the ESP image " + image, [&] {
    std::filesystem::remove(image);
    {
      UniqueFd fd = open_file(image, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0) fail_errno("resize " + image, errno);
    }
    const Uuid u = seed.empty() ? Uuid::random() : Uuid::derived(seed, "esp-volume-id");
    char volume_id[9];
    std::snprintf(volume_id, sizeof volume_id, "%02x%02x%02x%02x", u.bytes[0], u.bytes[1],
                  u.bytes[2], u.bytes[3]);
    // --invariant also fixes the volume ID, so our -i has to come after it.
    run_checked({"mkfs.vfat", "-F", "32", "-n", layout::kEspFsLabel, "--invariant", "-i", volume_id,
                 image});
  });
  return open_image_esp(image, 0);
}

}  // namespace osup
