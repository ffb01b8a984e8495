#include "tests/support/test_support.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "format/error.h"

namespace fs = std::filesystem;

namespace osup::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/osup-test-XXXXXX";
  if (!::mkdtemp(tmpl.data())) fail("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
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

void make_busybox_rootfs(Arch arch, const std::string& dir) {
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
}

std::string source_dir() { return OSUP_SOURCE_DIR; }
std::string osup_build_exe() { return std::string(OSUP_BINARY_DIR) + "/builder/osup-build"; }
std::string osup_exe() { return std::string(OSUP_BINARY_DIR) + "/updater/osup"; }

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
