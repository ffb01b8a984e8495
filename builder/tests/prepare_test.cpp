// prepare_rootfs: machine state stripped, key installed, os-release stamped, mtimes clamped.
#include "builder/rootfs/prepare.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "builder/tests/rootfs_test_support.h"

namespace fs = std::filesystem;
using osup::test::error_of;
using osup::test::lexists;
using osup::test::slurp;
using osup::test::TempDir;
namespace b = osup::build;

TEST_CASE("rootfs: prepare strips machine state, installs the key, stamps os-release", "[unit]") {
  TempDir t;
  const std::string root = t / "root";
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, root);
  fs::create_directories(root + "/var/lib/dbus");
  fs::create_directories(root + "/var/lib/apt/lists/partial");
  fs::create_directories(root + "/var/log/journal");
  fs::create_directories(root + "/var/cache/debconf");
  fs::create_directories(root + "/var/tmp");
  std::ofstream(root + "/var/lib/dbus/machine-id") << "0123\n";
  std::ofstream(root + "/etc/ssh/ssh_host_rsa_key.pub") << "pub\n";
  std::ofstream(root + "/etc/ssh/sshd_config") << "keep me\n";
  std::ofstream(root + "/var/lib/apt/lists/partial/x") << "x\n";
  std::ofstream(root + "/var/log/journal/system.journal") << "j\n";
  std::ofstream(root + "/var/cache/debconf/config.dat-old") << "old\n";
  std::ofstream(root + "/var/cache/debconf/config.dat") << "new\n";
  std::ofstream(root + "/tmp/junk") << "x\n";
  std::ofstream(root + "/var/tmp/junk") << "x\n";
  std::ofstream(root + "/etc/os-release", std::ios::app) << "IMAGE_ID=old\nIMAGE_VERSION=0.1\n";
  // A machine-id symlink pointing at a host path must be replaced, not written through.
  std::ofstream(t / "host-machine-id") << "host\n";
  fs::remove(root + "/etc/machine-id");
  fs::create_symlink(t / "host-machine-id", root + "/etc/machine-id");

  b::PrepareOptions o{"demo", "1.2.3", "-----BEGIN PUBLIC KEY-----\nabc\n", "ci-2024", 1600000000};
  b::prepare_rootfs(root, o);

  CHECK(slurp(t / "host-machine-id") == "host\n");
  CHECK(fs::is_regular_file(fs::symlink_status(root + "/etc/machine-id")));
  CHECK(fs::file_size(root + "/etc/machine-id") == 0);
  for (const char* gone :
       {"/var/lib/dbus/machine-id", "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_rsa_key.pub", "/etc/hostname", "/var/log/syslog",
        "/var/log/journal/system.journal", "/var/lib/apt/lists/deb.debian.org_dists",
        "/var/lib/apt/lists/partial/x", "/var/cache/debconf/config.dat-old", "/tmp/junk",
        "/var/tmp/junk"}) {
    INFO(gone);
    CHECK_FALSE(lexists(root + gone));
  }
  CHECK(slurp(root + "/etc/ssh/sshd_config") == "keep me\n");
  CHECK(fs::is_directory(root + "/var/log/journal"));
  CHECK(fs::is_directory(root + "/var/lib/apt/lists/partial"));
  CHECK(fs::is_regular_file(root + "/var/cache/debconf/config.dat"));
  CHECK(slurp(root + "/usr/lib/osup/keys/ci-2024.pem") == o.public_key_pem);

  CHECK(fs::read_symlink(root + "/etc/os-release") == "../usr/lib/os-release");
  const std::string osr = slurp(root + "/usr/lib/os-release");
  CHECK_THAT(osr, Catch::StartsWith("NAME=\"Busybox Test\"\nID=busybox\n"));
  CHECK_THAT(osr, Catch::EndsWith("IMAGE_ID=\"demo\"\nIMAGE_VERSION=\"1.2.3\"\n"));
  CHECK_THAT(osr, !Catch::Contains("IMAGE_ID=old") && !Catch::Contains("0.1"));

  // Every mtime is clamped, symlinks included; older ones are kept.
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    struct stat st {};
    REQUIRE(::lstat(e.path().c_str(), &st) == 0);
    INFO(e.path());
    CHECK(st.st_mtime <= 1600000000);
  }
  struct stat st {};
  REQUIRE(::lstat((root + "/bin/sh").c_str(), &st) == 0);
  CHECK(st.st_mtime == 1600000000);

  // Running it again is stable (os-release keeps one IMAGE_ID).
  b::prepare_rootfs(root, o);
  const std::string again = slurp(root + "/usr/lib/os-release");
  CHECK(again == osr);

  o.key_id = "../evil";
  CHECK_THAT(error_of([&] { b::prepare_rootfs(root, o); }),
             Catch::Contains("invalid key id '../evil'"));
}

TEST_CASE("rootfs: prepare creates os-release when the rootfs has none", "[unit]") {
  TempDir t;
  fs::create_directories(t / "r/etc");
  b::prepare_rootfs(t / "r", {"demo", "2", "", "", std::nullopt});
  CHECK(slurp(t / "r/usr/lib/os-release") ==
        "NAME=\"demo\"\nID=demo\nIMAGE_ID=\"demo\"\nIMAGE_VERSION=\"2\"\n");
  CHECK(slurp(t / "r/etc/os-release") == slurp(t / "r/usr/lib/os-release"));
  CHECK(fs::file_size(t / "r/etc/machine-id") == 0);
  CHECK_FALSE(fs::exists(t / "r/usr/lib/osup"));
}
