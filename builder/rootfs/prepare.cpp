#include "builder/rootfs/prepare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"
#include "builder/rootfs/overlay.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

class RootEditor {
 public:
  explicit RootEditor(std::string root) : root_(std::move(root)) {}

  // Host path of PATH inside the root; a final symlink is left alone unless follow_last.
  [[nodiscard]] std::string host(const std::string& path, bool follow_last = false) const {
    return resolve_in_root(root_, path, follow_last);
  }

  void remove(const std::string& path) const {
    std::error_code ec;
    fs::remove_all(host(path), ec);  // remove_all never follows symlinks
    if (ec) fail("removing " + path + " from the rootfs: " + ec.message());
  }

  // Removes the entries of DIR whose name matches; directories too unless keep_dirs, in
  // which case it descends into them and keeps the (emptied) directories.
  void clean_dir(const std::string& dir, bool keep_dirs,
                 const std::function<bool(const std::string&)>& match = {}) const {
    const std::string d = host(dir, true);
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(d, ec))) return;
    for (const auto& e : fs::directory_iterator(d)) {
      const std::string name = e.path().filename().string();
      if (match && !match(name)) continue;
      if (keep_dirs && e.is_directory() && !e.is_symlink())
        clean_dir(dir + "/" + name, true, {});
      else
        remove(dir + "/" + name);
    }
  }

  // Replaces PATH with a regular file (never writing through an existing symlink).
  void write_file(const std::string& path, const std::string& content, mode_t mode) const {
    const std::string p = host(path);
    fs::create_directories(fs::path(p).parent_path());
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) fail(path + " in the rootfs is a directory");
      if (::unlink(p.c_str()) != 0) fail_errno("unlink " + path, errno);
    }
    UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd.valid()) fail_errno("create " + path + " in the rootfs", errno);
    write_all(fd.get(), std::as_bytes(std::span(content.data(), content.size())), path);
    if (::fchmod(fd.get(), mode) != 0) fail_errno("chmod " + path, errno);
  }

  [[nodiscard]] std::optional<std::string> read_file(const std::string& path) const {
    const std::string p = host(path, true);
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return read_text_file(p);
  }

 private:
  std::string root_;
};

bool valid_key_id(const std::string& id) {
  return !id.empty() && id[0] != '.' && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// IMAGE_ID/IMAGE_VERSION replaced, everything else kept.
std::string stamp_os_release(const std::string& text, const PrepareOptions& o) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line))
    if (!line.starts_with("IMAGE_ID=") && !line.starts_with("IMAGE_VERSION=")) out += line + "\n";
  out += "IMAGE_ID=\"" + o.name + "\"\nIMAGE_VERSION=\"" + o.version + "\"\n";
  return out;
}

void clamp_mtimes(const std::string& root, uint64_t epoch) {
  const auto clamp = [&](const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) fail_errno("lstat " + path, errno);
    if (static_cast<uint64_t>(st.st_mtim.tv_sec) < epoch ||
        (static_cast<uint64_t>(st.st_mtim.tv_sec) == epoch && st.st_mtim.tv_nsec == 0))
      return;
    timespec times[2] = {{static_cast<time_t>(epoch), 0}, {static_cast<time_t>(epoch), 0}};
    if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      fail_errno("set the time of " + path, errno);
  };
  // The iterator does not follow directory symlinks, so it stays inside the root.
  for (const auto& e : fs::recursive_directory_iterator(root)) clamp(e.path().string());
  clamp(root);
}

}  // namespace

void prepare_rootfs(const std::string& root, const PrepareOptions& o) {
  with_context("preparing rootfs " + root, [&] {
    if (!fs::is_directory(root)) fail("not a directory");
    RootEditor r(root);

    // Identity of the build machine or of one installation; each boot creates its own.
    r.write_file("/etc/machine-id", "", 0444);
    for (const char* p : {"/var/lib/dbus/machine-id", "/etc/hostname",
                          "/var/lib/systemd/random-seed", "/var/lib/systemd/credential.secret"})
      r.remove(p);
    r.clean_dir("/etc/ssh", false, [](const std::string& n) { return n.starts_with("ssh_host_"); });

    // Caches and logs: stale the day the image ships, and they make builds differ.
    r.clean_dir("/var/lib/apt/lists", true);
    r.clean_dir("/var/cache/apt", true);
    r.clean_dir("/var/cache/debconf", false,
                [](const std::string& n) { return n.ends_with("-old"); });
    r.clean_dir("/var/log", true);
    r.clean_dir("/tmp", false);
    r.clean_dir("/var/tmp", false);

    if (!o.public_key_pem.empty()) {
      if (!valid_key_id(o.key_id))
        fail("invalid key id '" + o.key_id + "'; use letters, digits and . _ -");
      r.write_file("/usr/lib/osup/keys/" + o.key_id + ".pem", o.public_key_pem, 0644);
    }

    // The image's identity lives in /usr/lib/os-release; /etc/os-release points to it.
    auto text = r.read_file("/usr/lib/os-release");
    if (!text) text = r.read_file("/etc/os-release");
    if (!text) text = "NAME=\"" + o.name + "\"\nID=" + o.name + "\n";
    r.write_file("/usr/lib/os-release", stamp_os_release(*text, o), 0644);
    if (r.host("/etc/os-release", true) != r.host("/usr/lib/os-release", true)) {
      r.remove("/etc/os-release");
      fs::create_directories(r.host("/etc", true));
      fs::create_symlink("../usr/lib/os-release", r.host("/etc/os-release"));
    }

    if (o.source_date_epoch) clamp_mtimes(root, *o.source_date_epoch);
  });
}

}  // namespace osup::build
