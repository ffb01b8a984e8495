#include "base/block_device.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

#include "base/error.h"

namespace fs = std::filesystem;

namespace osup::blockdev {
namespace {

// mountinfo escapes space, tab, newline and backslash in paths as \ooo (octal).
std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string_view oct = s.substr(i + 1, 3);
      if (oct.find_first_not_of("01234567") == std::string_view::npos) {
        out += static_cast<char>(((oct[0] - '0') << 6) | ((oct[1] - '0') << 3) | (oct[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::optional<std::string> read_whole_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::optional<dev_t> read_devno(const fs::path& dev_file) {
  const auto text = read_whole_file(dev_file);
  return text ? parse_devno(*text) : std::nullopt;
}

std::optional<int> read_partition_number(const fs::path& dir) {
  const auto text = read_whole_file(dir / "partition");
  int n = 0;
  if (!text || !(std::istringstream(*text) >> n)) return std::nullopt;
  return n;
}

// The device's directory under /sys/devices, through its /sys/dev/block/MAJ:MIN link.
std::optional<fs::path> sysfs_dir(dev_t dev, const fs::path& sysfs) {
  std::error_code ec;
  fs::path dir = fs::canonical(sysfs / "dev/block" / devno_string(dev), ec);
  if (ec) return std::nullopt;
  return dir;
}

// The "dev" numbers of the entries in DIR (sysfs "slaves" and "holders" are links to devices).
std::set<dev_t> devices_listed_in(const fs::path& dir) {
  std::set<dev_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (auto d = read_devno(e.path() / "dev")) out.insert(*d);
  return out;
}

void collect_underlying(dev_t dev, const fs::path& sysfs, std::set<dev_t>& seen,
                        std::set<dev_t>& out) {
  if (!seen.insert(dev).second) return;
  const auto dir = sysfs_dir(dev, sysfs);
  const std::set<dev_t> slaves = dir ? devices_listed_in(*dir / "slaves") : std::set<dev_t>{};
  if (slaves.empty()) {
    out.insert(dev);
    return;
  }
  for (dev_t s : slaves) collect_underlying(s, sysfs, seen, out);
}

void collect_users(dev_t dev, const fs::path& sysfs, std::set<dev_t>& out) {
  if (!out.insert(dev).second) return;
  const auto dir = sysfs_dir(dev, sysfs);
  if (!dir) return;
  // A disk's partitions are subdirectories with a "partition" file.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(*dir, ec))
    if (read_partition_number(e.path()))
      if (auto p = read_devno(e.path() / "dev")) collect_users(*p, sysfs, out);
  for (dev_t h : devices_listed_in(*dir / "holders")) collect_users(h, sysfs, out);
}

}  // namespace

std::vector<Mount> parse_mountinfo(std::string_view text) {
  std::vector<Mount> mounts;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    if (!(fields >> id >> parent >> devno >> root >> mount_point)) continue;
    const auto dev = parse_devno(devno);
    if (!dev) continue;
    Mount m{.device = *dev, .root = unescape(root), .mount_point = unescape(mount_point)};
    std::string word;
    while (fields >> word && word != "-") {
    }
    if (word == "-") {
      fields >> m.fs_type;
      fields >> m.source;
      m.fs_type = unescape(m.fs_type);
      m.source = unescape(m.source);
    }
    mounts.push_back(std::move(m));
  }
  return mounts;
}

std::vector<Mount> read_mountinfo(const std::string& path) {
  const auto text = read_whole_file(path);
  return text ? parse_mountinfo(*text) : std::vector<Mount>{};
}

std::string devno_string(dev_t dev) {
  return std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
}

std::optional<dev_t> parse_devno(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  unsigned maj = 0, min = 0;
  const char* end = text.data() + text.size();
  auto r = std::from_chars(text.data(), end, maj);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != ':') return std::nullopt;
  r = std::from_chars(r.ptr + 1, end, min);
  if (r.ec != std::errc() || r.ptr != end) return std::nullopt;
  return makedev(maj, min);
}

dev_t device_of_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) fail_errno("stat " + path, errno);
  return st.st_dev;
}

std::optional<Mount> find_mount(const std::vector<Mount>& mounts, const std::set<dev_t>& devices) {
  for (const Mount& m : mounts)
    if (devices.count(m.device)) return m;
  return std::nullopt;
}

std::optional<std::string> sysfs_name(dev_t dev, const fs::path& sysfs) {
  const auto dir = sysfs_dir(dev, sysfs);
  if (!dir) return std::nullopt;
  return dir->filename().string();
}

std::optional<dev_t> device_named(const std::string& name, const fs::path& sysfs) {
  return read_devno(sysfs / "class/block" / name / "dev");
}

std::optional<int> partition_number(dev_t dev, const fs::path& sysfs) {
  const auto dir = sysfs_dir(dev, sysfs);
  return dir ? read_partition_number(*dir) : std::nullopt;
}

dev_t whole_disk(dev_t dev, const fs::path& sysfs) {
  const auto dir = sysfs_dir(dev, sysfs);
  if (!dir || !read_partition_number(*dir)) return dev;
  // A partition's directory sits inside its disk's.
  return read_devno(dir->parent_path() / "dev").value_or(dev);
}

std::optional<dev_t> partition_of(dev_t disk, int number, const fs::path& sysfs) {
  const auto dir = sysfs_dir(disk, sysfs);
  if (!dir) return std::nullopt;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(*dir, ec))
    if (read_partition_number(e.path()) == number) return read_devno(e.path() / "dev");
  return std::nullopt;
}

std::set<dev_t> underlying_devices(dev_t dev, const fs::path& sysfs) {
  std::set<dev_t> seen, out;
  collect_underlying(dev, sysfs, seen, out);
  return out;
}

std::set<dev_t> devices_using(dev_t dev, const fs::path& sysfs) {
  std::set<dev_t> out;
  collect_users(dev, sysfs, out);
  return out;
}

std::optional<Mount> mount_in_use(dev_t dev, const std::vector<Mount>& mounts,
                                  const fs::path& sysfs) {
  return find_mount(mounts, devices_using(dev, sysfs));
}

}  // namespace osup::blockdev
