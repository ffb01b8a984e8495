#include "tests/support/test_support.h"

#include <fcntl.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "format/gpt.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup::test {

std::string newc_cpio(const std::vector<std::pair<std::string, std::string>>& files, size_t pad) {
  std::string out;
  auto add = [&](const std::string& name, const std::string& data) {
    char hdr[111];
    std::snprintf(hdr, sizeof hdr, "070701%08x%08x%08x%08x%08x%08x%08zx%08x%08x%08x%08x%08zx%08x",
                  1u, 0100644u, 0u, 0u, 1u, 0u, data.size(), 0u, 0u, 0u, 0u, name.size() + 1, 0u);
    out += hdr;
    out += name;
    out.push_back('\0');
    out.resize((out.size() + 3) & ~size_t{3}, '\0');
    out += data;
    out.resize((out.size() + 3) & ~size_t{3}, '\0');
  };
  for (const auto& [name, data] : files) add(name, data);
  add("TRAILER!!!", "");
  out.resize((out.size() + pad - 1) / pad * pad, '\0');
  return out;
}

static std::string deps_cache() {
  const char* c = std::getenv("OSUP_DEPS_CACHE");
  return c && *c ? c : "/var/cache/osup-deps";
}

static std::string find_deb(const std::string& name, const std::string& debarch) {
  for (const auto& e : fs::directory_iterator(deps_cache())) {
    std::string f = e.path().filename().string();
    if (f.rfind(name + "_", 0) == 0 && f.ends_with("_" + debarch + ".deb")) return e.path();
  }
  fail("no " + name + " " + debarch + " .deb in " + deps_cache() + "; run scripts/install-deps.sh");
}

void extract_cached_deb(const std::string& name, Arch arch, const std::string& dir) {
  run_checked({"dpkg-deb", "-x", find_deb(name, debian_arch(arch)), dir});
}

void make_busybox_rootfs(Arch arch, const std::string& dir, bool with_kernel) {
  fs::create_directories(dir);
  TempDir x;
  run_checked({"dpkg-deb", "-x", find_deb("busybox-static", debian_arch(arch)), x.path()});
  for (const char* d : {"bin", "sbin", "etc", "usr/bin", "usr/lib", "var/log", "var/lib/apt/lists",
                        "var/cache/apt", "etc/ssh", "tmp", "proc", "sys", "dev", "run", "root"})
    fs::create_directories(fs::path(dir) / d);
  fs::copy_file(x / "bin/busybox", dir + "/bin/busybox", fs::copy_options::overwrite_existing);
  fs::permissions(dir + "/bin/busybox", fs::perms(0755));
  for (const char* applet : {"sh", "ls", "cat", "mount", "echo"}) {
    fs::path link = fs::path(dir) / "bin" / applet;
    if (!fs::exists(fs::symlink_status(link))) fs::create_symlink("busybox", link);
  }
  auto write = [&](const std::string& rel, const std::string& text) {
    std::ofstream(dir + "/" + rel) << text;
  };
  write("etc/os-release", "NAME=\"Busybox Test\"\nID=busybox\nPRETTY_NAME=\"Busybox Test\"\n");
  write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
  write("etc/ssh/ssh_host_ed25519_key", "secret\n");
  write("var/lib/apt/lists/deb.debian.org_dists", "lists\n");
  write("var/log/syslog", "log\n");
  write("etc/hostname", "builder-host\n");
  if (with_kernel) {
    fs::create_directories(fs::path(dir) / "boot");
    write_random_file(dir + "/boot/vmlinuz-0.0.1-test", 300 * 1024 + 123, 11);
    write_random_file(dir + "/boot/initrd.img-0.0.1-test", 200 * 1024 + 7, 12);
    // The real systemd-boot EFI binary for the arch, from Debian's systemd-boot-efi.
    TempDir sb;
    run_checked({"dpkg-deb", "-x", find_deb("systemd-boot-efi", debian_arch(arch)), sb.path()});
    fs::create_directories(fs::path(dir) / "usr/lib/systemd/boot/efi");
    fs::copy(sb / "usr/lib/systemd/boot/efi", dir + "/usr/lib/systemd/boot/efi",
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
}

std::string source_dir() { return OSUP_SOURCE_DIR; }
std::string osup_build_exe() { return std::string(OSUP_BINARY_DIR) + "/builder/osup-build"; }
std::string osup_exe() { return std::string(OSUP_BINARY_DIR) + "/updater/osup"; }

uint32_t free_fat_clusters(const std::string& image, uint64_t offset, const std::string& path) {
  // mshowfat names the chain's runs: "::/osup/b/vmlinuz <5-44> <60-61>".
  const std::string spec = offset ? image + "@@" + std::to_string(offset) : image;
  const std::string out = run_checked({"mshowfat", "-i", spec, "::" + path}).out;
  std::vector<std::pair<uint32_t, uint32_t>> runs;
  for (size_t lt = out.find('<'); lt != std::string::npos; lt = out.find('<', lt + 1)) {
    const size_t dash = out.find('-', lt), gt = out.find('>', lt);
    if (gt == std::string::npos) break;
    const uint32_t first = std::stoul(out.substr(lt + 1, dash - lt - 1));
    runs.emplace_back(first, dash < gt ? std::stoul(out.substr(dash + 1)) : first);
  }
  if (runs.empty()) fail("mshowfat shows no clusters for " + path + ": " + out);
  UniqueFd fd = open_file(image, O_RDWR);
  std::array<uint8_t, 512> boot{};
  (void)pread_full(fd.get(), std::as_writable_bytes(std::span(boot)), offset, image);
  const auto le = [&](size_t at, int n) {
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | boot[at + i];
    return v;
  };
  const uint64_t bps = le(11, 2), reserved = le(14, 2), fats = le(16, 1), fat_sectors = le(36, 4);
  const std::array<std::byte, 4> zero{};
  for (uint64_t f = 0; f < fats; ++f)
    for (const auto& [first, last] : runs)
      for (uint64_t c = first; c <= last; ++c)
        pwrite_all(fd.get(), zero, offset + (reserved + f * fat_sectors) * bps + c * 4, image);
  return runs.front().first;
}

void write_random_file(const std::string& path, uint64_t size, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream out(path, std::ios::binary);
  std::vector<uint64_t> buf(8192);
  while (size > 0) {
    for (auto& w : buf) w = rng();
    uint64_t n = std::min<uint64_t>(size, buf.size() * 8);
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    size -= n;
  }
}

RunResult run_cmd(const std::vector<std::string>& argv, const RunOptions& opts) {
  return run(argv, opts);
}

}  // namespace osup::test

namespace osup::test {

TestKey make_key(const std::string& dir, const std::string& type) {
  fs::create_directories(dir + "/pub");
  run_checked({osup_build_exe(), "keygen", "--out", dir, "--type", type});
  fs::rename(dir + "/osup.pub.pem", dir + "/pub/osup.pub.pem");
  return {dir + "/osup.key", dir + "/pub/osup.pub.pem", dir + "/pub"};
}

TestImage build_tiny_image(const std::string& dir, Arch arch, const std::string& version,
                           const TestKey& key, const std::string& name,
                           const std::vector<std::string>& extra_args, const std::string& out,
                           const std::string& secure_boot) {
  const std::string root = dir + "/rootfs-" + arch_name(arch);
  if (!fs::exists(root)) make_busybox_rootfs(arch, root, true);
  const std::string spec = dir + "/" + name + "-" + arch_name(arch) + ".json";
  std::ofstream(spec) << R"({"name": ")" << name << R"(", "version": ")" << version
                      << R"(", "arch": ")" << arch_name(arch) << R"(",
    "rootfs": {"directory": "rootfs-)"
                      << arch_name(arch) << R"("},
    "filesystem": {"type": "erofs", "compression": "lz4hc"},
    "disk": {"size": "320M", "esp": "64M", "slot": "64M"},
    "boot": {"cmdline": "console=ttyS0", "tries": 3})";
  if (!secure_boot.empty())
    std::ofstream(spec, std::ios::app) << R"(, "secure_boot": {"key": ")" << secure_boot
                                       << R"(/db.key", "cert": ")" << secure_boot << R"(/db.crt"})";
  std::ofstream(spec, std::ios::app) << "}";
  std::vector<std::string> argv = {osup_build_exe(), "image", spec,           "--key",
                                   key.private_key,  "--out", dir + "/" + out};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  RunResult r = run(argv);
  if (r.exit_code != 0) fail("osup-build image failed: " + r.err);
  std::string stem = dir + "/" + out + "/" + name + "-" + version + "-" + arch_name(arch);
  return {stem + ".img", stem + ".osup", stem + ".manifest.json"};
}

std::vector<std::string> offline_osup(const std::string& disk, const TestKey& key,
                                      const std::string& booted,
                                      const std::vector<std::string>& globals) {
  std::vector<std::string> argv = {osup_exe(),    "--disk",     disk,  "--keys",
                                   key.trust_dir, "--progress", "none"};
  if (!booted.empty()) argv.insert(argv.end(), {"--booted", booted});
  argv.insert(argv.end(), globals.begin(), globals.end());
  return argv;
}

RunResult run_offline_osup(const std::string& disk, const TestKey& key, const std::string& booted,
                           const std::vector<std::string>& args,
                           const std::vector<std::string>& globals) {
  std::vector<std::string> argv = offline_osup(disk, key, booted, globals);
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::string partition_sha256(const std::string& disk, const std::string& label) {
  gpt::Table t = gpt::read(disk);
  const gpt::Partition* p = t.find(label);
  if (!p) fail(disk + " has no partition " + label);
  UniqueFd fd = open_file(disk, O_RDONLY);
  Sha256 h;
  std::vector<std::byte> buf(1 << 20);
  for (uint64_t done = 0; done < p->size;) {
    size_t n =
        pread_full(fd.get(), std::span(buf.data(), std::min<uint64_t>(buf.size(), p->size - done)),
                   p->start + done, disk);
    if (n == 0) break;
    h.update(std::span(buf.data(), n));
    done += n;
  }
  return to_hex(h.finish());
}

}  // namespace osup::test
