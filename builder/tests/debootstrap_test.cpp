// The debootstrap source: its cache key and location, a cache hit without debootstrap, a
// missing debootstrap, and (hidden, needs the network) a real bootstrap.
#include "builder/rootfs/debootstrap.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "builder/rootfs/elf_check.h"
#include "builder/rootfs/source.h"
#include "builder/rootfs/tarball.h"
#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::error_of;
using osup::test::slurp;
using osup::test::TempDir;
namespace b = osup::build;

TEST_CASE("rootfs: debootstrap results come from the cache keyed by their parameters", "[unit]") {
  TempDir t;
  b::DebootstrapSource d;
  d.cache = t / "cache";
  d.packages = {"systemd", "udev"};
  const std::string path = b::debootstrap_cache_path(d, osup::Arch::aarch64);
  CHECK_THAT(path, Catch::StartsWith(t / "cache/debootstrap/bookworm-arm64-") &&
                       Catch::EndsWith(".tar.zst"));
  auto other = d;
  other.packages = {"udev", "systemd"};  // order does not matter
  CHECK(b::debootstrap_cache_path(other, osup::Arch::aarch64) == path);
  other.packages = {"udev"};
  CHECK(b::debootstrap_cache_path(other, osup::Arch::aarch64) != path);
  other = d;
  other.mirror = "http://mirror.example/debian";
  CHECK(b::debootstrap_cache_path(other, osup::Arch::aarch64) != path);
  CHECK(b::debootstrap_cache_path(d, osup::Arch::x86_64) != path);
  ::setenv("OSUP_CACHE_DIR", (t / "env-cache").c_str(), 1);
  other = d;
  other.cache.reset();
  CHECK_THAT(b::debootstrap_cache_path(other, osup::Arch::aarch64),
             Catch::StartsWith(t / "env-cache/debootstrap/"));
  ::unsetenv("OSUP_CACHE_DIR");

  // A cached foreign-arch rootfs is used as is: no debootstrap, no network.
  osup::test::make_busybox_rootfs(osup::Arch::aarch64, t / "bb");
  REQUIRE(::chown((t / "bb/etc/hostname").c_str(), 42, 43) == 0);
  fs::create_directories(fs::path(path).parent_path());
  b::create_tarball(t / "bb", path);
  b::Spec spec;
  spec.arch = osup::Arch::aarch64;
  spec.rootfs = d;
  b::populate_rootfs(spec, t / "dest");
  CHECK_NOTHROW(b::check_rootfs_arch(t / "dest", osup::Arch::aarch64));
  struct stat st {};
  REQUIRE(::stat((t / "dest/etc/hostname").c_str(), &st) == 0);
  CHECK(st.st_uid == 42);
  CHECK(st.st_gid == 43);
}

TEST_CASE("rootfs: a missing debootstrap names its Debian package", "[unit]") {
  TempDir t;
  fs::create_directories(t / "empty");
  b::DebootstrapSource d;
  d.cache = t / "cache";
  b::Spec spec;
  spec.arch = osup::host_arch();
  spec.rootfs = d;
  ::setenv("OSUP_TOOL_PATH", (t / "empty").c_str(), 1);  // debootstrap is in /usr/sbin
  std::string err = error_of([&] { b::populate_rootfs(spec, t / "dest"); });
  ::unsetenv("OSUP_TOOL_PATH");
  CHECK(err ==
        "bootstrapping Debian: debootstrap not found; install the Debian package debootstrap "
        "(apt-get install debootstrap)");
}

TEST_CASE("rootfs: debootstrap a minbase bookworm for the host arch, then from the cache",
          "[.][debootstrap]") {
  TempDir t;
  b::Spec spec;
  spec.arch = osup::host_arch();
  b::DebootstrapSource d;
  d.cache = t / "cache";
  spec.rootfs = d;
  auto start = std::chrono::steady_clock::now();
  b::populate_rootfs(spec, t / "first");
  auto mid = std::chrono::steady_clock::now();
  CHECK_NOTHROW(b::check_rootfs_arch(t / "first", spec.arch));
  CHECK(fs::exists(t / "first/usr/bin/apt-get"));
  REQUIRE(fs::is_directory(t / "cache/debootstrap"));
  CHECK(std::distance(fs::directory_iterator(t / "cache/debootstrap"), {}) == 1);

  b::populate_rootfs(spec, t / "second");
  auto end = std::chrono::steady_clock::now();
  CHECK(fs::exists(t / "second/usr/bin/apt-get"));
  CHECK(fs::read_symlink(t / "second/bin") == fs::read_symlink(t / "first/bin"));
  CHECK(slurp(t / "second/etc/debian_version") == slurp(t / "first/etc/debian_version"));
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  std::cerr << "debootstrap: " << duration_cast<seconds>(mid - start).count()
            << " s, from cache: " << duration_cast<seconds>(end - mid).count() << " s\n";
  CHECK(end - mid < mid - start);
}
