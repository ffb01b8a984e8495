// Paths resolved inside a rootfs and the overlay copied over one: nothing escapes the root.
#include "builder/rootfs/overlay.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::error_of;
using osup::test::slurp;
using osup::test::TempDir;
namespace b = osup::build;

TEST_CASE("rootfs: resolve_in_root follows symlinks inside the root only", "[unit]") {
  TempDir t;
  const std::string r = t / "root";
  fs::create_directories(r + "/usr/bin");
  fs::create_symlink("usr/bin", r + "/bin");
  fs::create_symlink("/usr/bin/dash", r + "/usr/bin/sh");
  fs::create_symlink("../../../../../../etc", r + "/usr/escape");
  CHECK(b::resolve_in_root(r, "/bin/sh") == r + "/usr/bin/dash");
  CHECK(b::resolve_in_root(r, "/bin/sh", false) == r + "/usr/bin/sh");
  CHECK(b::resolve_in_root(r, "/usr/escape/passwd") == r + "/etc/passwd");
  CHECK(b::resolve_in_root(r, "../../x") == r + "/x");
  CHECK(b::resolve_in_root(r, "/") == r);
  fs::create_symlink("loop2", r + "/loop1");
  fs::create_symlink("loop1", r + "/loop2");
  CHECK_THROWS_WITH(b::resolve_in_root(r, "/loop1"), Catch::StartsWith("too many levels"));
}

TEST_CASE("rootfs: overlay replaces files, never writes through symlinks, is root-owned",
          "[unit]") {
  TempDir t;
  const std::string root = t / "root";
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, root);
  // A usr-merged layout and an absolute symlink pointing at a "host" file.
  fs::create_directories(root + "/usr/lib");
  std::ofstream(t / "hostfile") << "host\n";
  fs::create_symlink(t / "hostfile", root + "/etc/resolv.conf");
  fs::create_symlink("usr/lib", root + "/lib");

  const std::string ov = t / "overlay";
  fs::create_directories(ov + "/etc/ssh");
  fs::create_directories(ov + "/lib/systemd");
  std::ofstream(ov + "/etc/resolv.conf") << "nameserver 192.0.2.1\n";
  std::ofstream(ov + "/etc/motd") << "hello\n";
  std::ofstream(ov + "/lib/systemd/osup.conf") << "x\n";
  fs::create_symlink("motd", ov + "/etc/motd-link");
  fs::permissions(ov + "/etc/motd", fs::perms(0640));
  REQUIRE(::chown((ov + "/etc/motd").c_str(), 1000, 1000) == 0);
  fs::permissions(root + "/etc", fs::perms(0751));

  b::apply_overlay(ov, root);
  CHECK(slurp(t / "hostfile") == "host\n");
  CHECK(fs::is_regular_file(fs::symlink_status(root + "/etc/resolv.conf")));
  CHECK(slurp(root + "/etc/resolv.conf") == "nameserver 192.0.2.1\n");
  struct stat st {};
  REQUIRE(::stat((root + "/etc/motd").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 0777) == 0640);
  CHECK(fs::read_symlink(root + "/etc/motd-link") == "motd");
  // Through the rootfs's /lib -> usr/lib symlink, which stays a symlink.
  CHECK(fs::is_symlink(root + "/lib"));
  CHECK(slurp(root + "/usr/lib/systemd/osup.conf") == "x\n");
  // Existing directories keep their mode.
  CHECK((fs::status(root + "/etc").permissions() & fs::perms::all) == fs::perms(0751));

  fs::create_directories(t / "ov2/etc");
  std::ofstream(t / "ov2/etc/ssh") << "file over a dir\n";
  CHECK_THAT(error_of([&] { b::apply_overlay(t / "ov2", root); }),
             Catch::Contains("'etc/ssh' would replace the directory /etc/ssh"));
}
