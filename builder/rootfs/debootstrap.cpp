#include "builder/rootfs/debootstrap.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/process.h"
#include "builder/rootfs/cache.h"
#include "builder/rootfs/tarball.h"
#include "format/sha256.h"

namespace fs = std::filesystem;

namespace osup::build {
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
    const std::string tail = last_line(r.err.empty() ? r.out : r.err);
    fail("debootstrap " + d.suite + " (" + debian_arch(arch) + ") failed (exit " +
         std::to_string(r.exit_code) + "): " + tail + "; see " + dest +
         "/debootstrap/debootstrap.log");
  }
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
  const std::string root = d.cache ? d.cache->string() : cache_root();
  return root + "/debootstrap/" + d.suite + "-" + debian_arch(arch) + "-" +
         to_hex(dg).substr(0, 16) + ".tar.zst";
}

void debootstrap(const DebootstrapSource& d, Arch arch, const std::string& dest) {
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

}  // namespace osup::build
